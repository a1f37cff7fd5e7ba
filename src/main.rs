//! The `ampere` binary: the sync service (`ampere`, `ampere serve`, `ampere dev`) and the
//! operator subcommands that talk to a running one (`shapes`, `replication`, `health`). See
//! [`ampere::cli`].

fn main() -> std::process::ExitCode {
    ampere::cli::run(ampere::cli::parse())
}
