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

/// Switches to `user` (or `DEFAULT_USER` when started as root). Switching from root to
/// another uid also clears every capability (the kernel does so unless asked to keep them).
pub fn drop_to(user: Option<&str>) -> Result<Dropped, String> {
    if !getuid().is_root() {
        clear_capabilities()?;
        return Ok(Dropped::NotRoot);
    }
    let (name, explicit) = match user {
        Some(u) => (u, true),
        None => (DEFAULT_USER, false),
    };
    if name == "root" {
        return Ok(Dropped::StillRoot);
    }
    let found = User::from_name(name).map_err(|e| format!("cannot look up user {name:?}: {e}"))?;
    let Some(u) = found else {
        return if explicit {
            Err(format!("user {name:?} does not exist (create it: `useradd --system --no-create-home {name}`)"))
        } else {
            Ok(Dropped::StillRoot)
        };
    };
    setgroups(&[]).map_err(|e| format!("cannot clear supplementary groups: {e}"))?;
    setgid(u.gid).map_err(|e| format!("cannot switch to group {}: {e}", u.gid))?;
    setuid(u.uid).map_err(|e| format!("cannot switch to user {name:?}: {e}"))?;
    // Prove it cannot be undone.
    if setuid(nix::unistd::Uid::from_raw(0)).is_ok() {
        return Err("privileges could be regained after dropping them; refusing to run".into());
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
fn clear_capabilities() -> Result<(), String> {
    use caps::CapSet;
    for set in [
        CapSet::Ambient,
        CapSet::Inheritable,
        CapSet::Effective,
        CapSet::Permitted,
    ] {
        caps::clear(None, set)
            .map_err(|e| format!("cannot clear the {set:?} capabilities: {e}"))?;
    }
    let left = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    if !left.is_empty() {
        return Err(format!(
            "capabilities {left:?} remain after clearing them; refusing to run"
        ));
    }
    Ok(())
}
