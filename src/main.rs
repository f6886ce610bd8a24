fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    igel_update_agent::cli::main()
}

/// glibc gives each thread that allocates under contention an arena of its own and keeps
/// what is freed there: a delta update, which allocates its chunks on the runtime's blocking
/// threads, peaked at 22.2 MB of RSS for a 1 GiB file with the default arenas and at 16.1 MB
/// with one (`docs/BENCHMARKS.md`, delta updates). The agent's work is I/O-bound, so one arena
/// costs no measurable time. musl's allocator has no arenas; nothing to do there.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it runs before any other thread
    // exists, so no allocation races with it. Its result (0 on failure) changes nothing the
    // agent relies on.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
