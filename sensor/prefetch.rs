//! Cache hints: the one place outside `capture/` that needs `unsafe`, for an instruction
//! that only asks the processor to start loading a line (see `pipeline::worker`).

/// Starts loading the cache line at `target` into every level of this core's caches. A hint,
/// not a read: any address is allowed (nothing is dereferenced, no fault is raised), so it is
/// as safe as taking a reference's address. A no-op where the architecture has none stable.
#[inline(always)]
pub fn warm<T>(target: *const T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    // SAFETY: PREFETCHT0 never faults, whatever the address, and SSE (which it needs) is part
    // of x86_64's baseline, so the instruction exists on every processor this build runs on.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(target.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = target;
}

#[cfg(test)]
mod tests {
    /// The safety argument above, checked: addresses nothing is mapped at (the null page,
    /// the kernel's half of the address space) do not fault.
    #[test]
    fn warming_an_address_nothing_is_mapped_at_is_harmless() {
        super::warm(std::ptr::null::<u8>());
        super::warm(usize::MAX as *const u64);
        super::warm(0xffff_8000_0000_0000_usize as *const u8);
    }
}
