//! The `freshet` command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "freshet", version, about = "Freshet: a SQL-first streaming database")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Server {
        /// Where data is stored.
        #[arg(long, default_value = "./freshet-data")]
        data_dir: PathBuf,
        /// PostgreSQL wire protocol address.
        #[arg(long, default_value = "127.0.0.1:5434")]
        pg_listen: SocketAddr,
        /// HTTP address.
        #[arg(long, default_value = "127.0.0.1:8434")]
        http_listen: SocketAddr,
        /// Do not fsync the WAL at each commit (faster; a crash may lose the last commits).
        #[arg(long)]
        no_sync: bool,
        /// Memory for the in-memory copies of operator state, in MiB (0: operators read the
        /// store for every access).
        #[arg(long, default_value_t = 2048)]
        state_cache_mb: usize,
    },
    /// Print the version.
    Version,
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_t` (`mimalloc.h`; libmimalloc-sys has no
/// constant for it). Its default is 1,000 (ms), which the test below checks.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc keeps pages freed before it returns them to the system, in ms (its
/// default: 1,000), unless `MIMALLOC_PURGE_DELAY` is set. An epoch frees what it allocated for
/// its changes and deltas; kept for a second, a second of epochs' pages was resident on top of
/// the live heap. At 100 ms, Nexmark at 3M events: q5 peaked 130 MiB instead of 165-172, q8
/// 77 instead of 80-91, q12 80-82 instead of 89-91, for 0-5 % more CPU (pages faulted in
/// again); at 0 the CPU cost was 16 % on q12 (see BENCHMARKS.md).
const PURGE_DELAY_MS: std::ffi::c_long = 100;

fn main() -> anyhow::Result<()> {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; no other thread runs yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("freshet {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Server {
            data_dir,
            pg_listen,
            http_listen,
            no_sync,
            state_cache_mb,
        } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let config = freshet::server::ServerConfig {
                data_dir,
                pg_listen,
                http_listen,
                sync: !no_sync,
                state_cache_bytes: state_cache_mb << 20,
            };
            if let Err(e) = runtime.block_on(freshet::server::run(config)) {
                eprintln!("freshet: {e}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // Option 15 has the purge delay's default (1,000 ms) when the environment does not set it.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads one integer option of the allocator.
            assert_eq!(
                unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) },
                1000
            );
        }
    }
}
