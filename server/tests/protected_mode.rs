//! Protected mode: the binary refuses to serve a non-loopback address that
//! nothing guards, and says why in one line.

use std::process::Command;

#[test]
fn an_unguarded_public_address_is_refused_in_one_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_shoal-server"))
        .args(["--listen", "0.0.0.0:0", "--admin-listen", "off"])
        .env_remove("SHOAL_INSECURE")
        .output()
        .expect("run shoal-server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    for expected in ["0.0.0.0:0", "--token-file", "client_auth", "--insecure"] {
        assert!(stderr.contains(expected), "{expected:?} in {stderr}");
    }
}
