//! The real binary's log output, as a log collector or a file receives it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_shoal-server"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start shoal-server");
    let stderr = server.stderr.take().expect("stderr");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let listening = loop {
        match received.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => {
                let done = line.contains("shoal-server listening");
                seen.push(line);
                if done {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(listening, "the server never said it listened: {seen:?}");
    for line in &seen {
        assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    }
}
