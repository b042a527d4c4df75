//! `latchgate serve` for the production tests: the same [`Gate`] handle as
//! `latchgate up`, and a way to run `serve` to its refusal and read why.

use crate::{Gate, GateDir, bin_dir, reap_when_gone, wait_exit};
use latchgate_core::production::ACCEPT_DEVELOPMENT_BUILD_ENV;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Environment every production test passes: a development build (the test
/// binaries carry the escape probe) is accepted, so that the check under test
/// is the only one that fires. Tests of the development-build check omit it.
pub const ACCEPT_DEVELOPMENT_BUILD: (&str, &str) = (ACCEPT_DEVELOPMENT_BUILD_ENV, "1");

/// Start `latchgate serve` on the directory's config.
pub fn start_serve(dir: &GateDir, env: &[(&str, &str)]) -> Gate {
    Gate::start_subcommand(dir, "serve", env)
}

/// Run `latchgate <args> --config <config>` to completion: (exit code, stdout, stderr).
pub fn run_cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut child = Command::new(bin_dir().join("latchgate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run latchgate");
    reap_when_gone(child.id());
    let (mut out, mut err) = (child.stdout.take().expect("stdout"), child.stderr.take().expect("stderr"));
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut s);
            s
        }),
    );
    let status = wait_exit(&mut child, Duration::from_secs(120)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("latchgate {args:?} did not finish");
    });
    (status.code().unwrap_or(-1), readers.0.join().unwrap_or_default(), readers.1.join().unwrap_or_default())
}
