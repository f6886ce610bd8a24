fn main() -> std::process::ExitCode {
    igel_update_agent::cli::main()
}
