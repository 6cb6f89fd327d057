//! Giving freed heap memory back to the operating system after a model load.
//!
//! Loading a GGUF file builds large short-lived structures between long-lived ones: the file's
//! metadata (every token as a string: 262,144 for Gemma 3), the tokenizer's merge list while it is
//! sorted, and fused weight matrices' parts. glibc's allocator keeps what they leave behind in its
//! heaps when live blocks sit above it, so the process stayed resident at that peak: Gemma 3 270M
//! Q4_K_M held 49 MiB, SmolLM2 Q4_K_M 11 MiB of freed memory after loading
//! (`bench/llm/load_memory.sh`). [`release_freed`] returns the free pages of every arena
//! (`malloc_trim`); live data is not moved.

/// Return the allocator's free memory to the operating system (glibc's `malloc_trim(0)`, which
/// walks every arena); a no-op on other C libraries. Costs a few milliseconds: call it after a
/// load, not per request.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only releases free pages under the allocator's own locks; it reads
    // or moves no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Resident bytes of this process (`VmRSS`).
    fn rss() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap();
        let kb = s
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .unwrap()
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .unwrap();
        kb * 1024
    }

    /// Many small blocks freed below a live one stay resident until released: 64 MiB of
    /// 1 KiB strings (like a GGUF vocabulary) under a small live block allocated after them.
    #[test]
    fn freed_small_blocks_under_a_live_block_are_returned() {
        // Run alone in a process of its own: RSS and `malloc_trim` are process-wide, and other
        // tests of this binary load models (which call `release_freed`) in parallel.
        const CHILD: &str = "LEPTON_MEMORY_TEST_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "runtime::memory::tests::freed_small_blocks_under_a_live_block_are_returned";
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", name, "--test-threads=1"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("1 passed"),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            return;
        }
        let strings: Vec<Vec<u8>> = (0..65_536).map(|i| vec![i as u8; 1000]).collect();
        let live: Box<[u8]> = vec![7u8; 100].into_boxed_slice();
        // Kept from being optimised away (an unused allocation may be elided).
        std::hint::black_box((&strings, &live));
        drop(strings);
        let before = rss();
        super::release_freed();
        let after = rss();
        assert_eq!(live[99], 7);
        assert!(
            before >= after + (32 << 20),
            "resident before {before}, after {after}: at least 32 MiB should have been returned"
        );
    }
}
