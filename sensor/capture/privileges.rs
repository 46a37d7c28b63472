//! Dropping privileges once the capture handles are open: a sensor reads traffic an
//! adversary controls, so after start-up it runs as an ordinary user with no capabilities.
//! Open libpcap handles, output files and the metrics socket keep working.
//!
//! A sensor started unprivileged but with capabilities (systemd's `AmbientCapabilities`,
//! `setcap` on the binary) clears them all instead: it needed CAP_NET_RAW and CAP_NET_ADMIN
//! only to open its capture handles, and CAP_NET_ADMIN kept would let a compromised parser
//! reconfigure the host's interfaces and firewall.

use nix::unistd::{getuid, setgid, setgroups, setuid, User};

/// The user a sensor started as root switches to when none is named.
pub const DEFAULT_USER: &str = "vendorwatch";

/// What happened to the process's privileges.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// Not started as root: every capability it was given is cleared.
    NotRoot,
    /// Now running as this user (uid, gid), supplementary groups cleared.
    To { user: String, uid: u32, gid: u32 },
    /// Started as root, no user named and the default user does not exist: still root.
    StillRoot,
}

/// Why privileges could not be dropped (the sensor refuses to run on).
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot look up user {name:?}: {source}")]
    Lookup { name: String, source: nix::Error },
    #[error(
        "user {name:?} does not exist (create it: `useradd --system --no-create-home {name}`)"
    )]
    NoSuchUser { name: String },
    #[error("cannot clear supplementary groups: {0}")]
    ClearGroups(nix::Error),
    #[error("cannot switch to group {gid}: {source}")]
    SwitchGroup { gid: u32, source: nix::Error },
    #[error("cannot switch to user {name:?}: {source}")]
    SwitchUser { name: String, source: nix::Error },
    #[error("privileges could be regained after dropping them; refusing to run")]
    Regained,
    #[error("cannot clear the {set:?} capabilities: {source}")]
    ClearCapabilities {
        set: caps::CapSet,
        source: caps::errors::CapsError,
    },
    #[error("{0}")]
    ReadCapabilities(caps::errors::CapsError),
    #[error("capabilities {0:?} remain after clearing them; refusing to run")]
    CapabilitiesRemain(caps::CapsHashSet),
}

impl PrivilegeError {
    /// A short label (for logs and metrics).
    pub fn reason(&self) -> &'static str {
        match self {
            PrivilegeError::Lookup { .. } => "user_lookup",
            PrivilegeError::NoSuchUser { .. } => "no_such_user",
            PrivilegeError::ClearGroups(_) => "clear_groups",
            PrivilegeError::SwitchGroup { .. } => "switch_group",
            PrivilegeError::SwitchUser { .. } => "switch_user",
            PrivilegeError::Regained => "regained",
            PrivilegeError::ClearCapabilities { .. } => "clear_capabilities",
            PrivilegeError::ReadCapabilities(_) => "read_capabilities",
            PrivilegeError::CapabilitiesRemain(_) => "capabilities_remain",
        }
    }
}

/// Whether `drop_to(user)` will find the user it switches to, without switching: a sensor
/// that waits at start (for an interface that is down) says a missing `--user` at once.
pub fn check_user(user: Option<&str>) -> Result<(), PrivilegeError> {
    if getuid().is_root() {
        target(user)?;
    }
    Ok(())
}

/// The user a process started as root switches to: `None` to stay root (`root` named, or
/// the default user missing); an error when a named user does not exist.
fn target(user: Option<&str>) -> Result<Option<User>, PrivilegeError> {
    let (name, explicit) = match user {
        Some(u) => (u, true),
        None => (DEFAULT_USER, false),
    };
    if name == "root" {
        return Ok(None);
    }
    let found = User::from_name(name).map_err(|source| PrivilegeError::Lookup {
        name: name.to_string(),
        source,
    })?;
    match found {
        None if explicit => Err(PrivilegeError::NoSuchUser {
            name: name.to_string(),
        }),
        found => Ok(found),
    }
}

/// Switches to `user` (or `DEFAULT_USER` when started as root). Switching from root to
/// another uid also clears every capability (the kernel does so unless asked to keep them).
pub fn drop_to(user: Option<&str>) -> Result<Dropped, PrivilegeError> {
    if !getuid().is_root() {
        clear_capabilities()?;
        return Ok(Dropped::NotRoot);
    }
    let Some(u) = target(user)? else {
        return Ok(Dropped::StillRoot);
    };
    // The name asked for, as before the lookup (a directory service may spell it otherwise).
    let name = user.unwrap_or(DEFAULT_USER);
    setgroups(&[]).map_err(PrivilegeError::ClearGroups)?;
    setgid(u.gid).map_err(|source| PrivilegeError::SwitchGroup {
        gid: u.gid.as_raw(),
        source,
    })?;
    setuid(u.uid).map_err(|source| PrivilegeError::SwitchUser {
        name: name.to_string(),
        source,
    })?;
    // Prove it cannot be undone.
    if setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        return Err(PrivilegeError::Regained);
    }
    Ok(Dropped::To {
        user: name.to_string(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    })
}

/// Clears the ambient, inheritable, effective and permitted sets; permitted last, since
/// changing the others needs nothing more than what is permitted. The bounding set stays
/// (changing it needs CAP_SETPCAP), which is harmless: with no permitted capabilities and
/// `no_new_privs` (set by the seccomp filter, which also refuses exec) none comes back.
fn clear_capabilities() -> Result<(), PrivilegeError> {
    use caps::CapSet;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|source| PrivilegeError::ClearCapabilities { set, source })?;
    }
    let left = caps::read(None, CapSet::Permitted).map_err(PrivilegeError::ReadCapabilities)?;
    if !left.is_empty() {
        return Err(PrivilegeError::CapabilitiesRemain(left));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_errors_have_unique_reasons_and_keep_their_words() {
        use nix::errno::Errno;
        let errors = [
            PrivilegeError::Lookup {
                name: "sensor".into(),
                source: Errno::EIO,
            },
            PrivilegeError::NoSuchUser {
                name: "sensor".into(),
            },
            PrivilegeError::ClearGroups(Errno::EPERM),
            PrivilegeError::SwitchGroup {
                gid: 998,
                source: Errno::EPERM,
            },
            PrivilegeError::SwitchUser {
                name: "sensor".into(),
                source: Errno::EPERM,
            },
            PrivilegeError::Regained,
            PrivilegeError::ClearCapabilities {
                set: caps::CapSet::Ambient,
                source: caps::errors::CapsError::from("denied"),
            },
            PrivilegeError::ReadCapabilities(caps::errors::CapsError::from("denied")),
            PrivilegeError::CapabilitiesRemain(caps::CapsHashSet::new()),
        ];
        let labels: std::collections::HashSet<_> = errors.iter().map(|e| e.reason()).collect();
        assert_eq!(labels.len(), errors.len());
        assert_eq!(
            errors[1].to_string(),
            "user \"sensor\" does not exist (create it: `useradd --system --no-create-home sensor`)"
        );
        assert_eq!(
            errors[3].to_string(),
            "cannot switch to group 998: EPERM: Operation not permitted"
        );
    }
}
