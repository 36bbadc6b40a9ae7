//! `replicode keys add|list|show|export|import`: the account keys of this
//! machine's keyring (as `simd keys` / `gaiad keys` with the `test` backend).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::cmd::OutputFormat;
use crate::keyring::{KeyFile, Keyring};

#[derive(clap::Args, Debug)]
pub struct KeysArgs {
    #[command(flatten)]
    pub keyring: KeyringArgs,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// Which keyring a command uses.
#[derive(clap::Args, Debug, Clone)]
pub struct KeyringArgs {
    /// The keyring directory (default: `DIR/keyring` with `--testnet DIR`,
    /// else ~/.replicode/keyring).
    #[arg(long, env = "REPLICODE_KEYRING", global = true)]
    pub keyring_dir: Option<PathBuf>,
}

impl KeyringArgs {
    /// `--keyring-dir`, else the testnet's keyring, else the user's.
    pub fn keyring(&self, testnet: Option<&std::path::Path>) -> Keyring {
        if let Some(dir) = &self.keyring_dir {
            return Keyring::at(dir);
        }
        if let Some(net) = testnet {
            return Keyring::at(&net.join("keyring"));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Keyring::at(&home.join(".replicode/keyring"))
    }
}

#[derive(clap::Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a new random key called NAME.
    Add {
        name: String,
        /// The keyring of this testnet directory.
        #[arg(long)]
        testnet: Option<PathBuf>,
    },
    /// Every key's name and address.
    List {
        #[arg(long)]
        testnet: Option<PathBuf>,
    },
    /// One key's address and public key.
    Show {
        name: String,
        /// Print only the address.
        #[arg(long)]
        address: bool,
        #[arg(long)]
        testnet: Option<PathBuf>,
    },
    /// Print a key file, private key included, to move it to another keyring.
    Export {
        name: String,
        #[arg(long)]
        testnet: Option<PathBuf>,
    },
    /// Store a key exported elsewhere under NAME (FILE, or stdin when `-`).
    Import {
        name: String,
        file: PathBuf,
        #[arg(long)]
        testnet: Option<PathBuf>,
    },
}

pub fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let ring = |testnet: &Option<PathBuf>| args.keyring.keyring(testnet.as_deref());
    let json = args.output == OutputFormat::Json;
    match &args.command {
        KeysCommand::Add { name, testnet } => {
            let key = ring(testnet).add(name)?;
            print_key(&key, json);
        }
        KeysCommand::List { testnet } => {
            let keys = ring(testnet).list()?;
            if json {
                let list: Vec<_> = keys.iter().map(KeyFile::public).collect();
                println!("{}", serde_json::to_string(&list)?);
            } else {
                for key in &keys {
                    println!("{:<16} {}", key.name, key.address);
                }
            }
        }
        KeysCommand::Show {
            name,
            address,
            testnet,
        } => {
            let key = ring(testnet).get(name)?;
            if *address {
                println!("{}", key.address);
            } else {
                print_key(&key, json);
            }
        }
        KeysCommand::Export { name, testnet } => {
            let key = ring(testnet).get(name)?;
            eprintln!(
                "replicode: this is the private key of {name}: anyone who has it can sign as {}",
                key.address
            );
            println!("{}", serde_json::to_string_pretty(&key)?);
        }
        KeysCommand::Import {
            name,
            file,
            testnet,
        } => {
            let mut text = Vec::new();
            if file.as_os_str() == "-" {
                std::io::stdin().read_to_end(&mut text)?;
            } else {
                text = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
            }
            let mut key: KeyFile = serde_json::from_slice(&text)
                .with_context(|| format!("{} is not an exported key", file.display()))?;
            key.name = name.clone();
            let key = ring(testnet).store(&key)?;
            print_key(&key, json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_key(key: &KeyFile, json: bool) {
    if json {
        println!("{}", key.public());
    } else {
        println!(
            "name: {}\naddress: {}\npublic_key: {}",
            key.name, key.address, key.public_key
        );
    }
}
