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

fn main() -> anyhow::Result<()> {
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
