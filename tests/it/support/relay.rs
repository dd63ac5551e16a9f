//! A TCP relay to the DynamoDB server that a test can cut (every connection killed, new ones
//! refused) and restore: the lease table becoming unreachable.

use std::os::unix::process::CommandExt;

use super::dynamodb_endpoint;

fn spawn(port: u16) -> std::process::Child {
    let target = dynamodb_endpoint()
        .trim_start_matches("http://")
        .to_string();
    std::process::Command::new("socat")
        .arg(format!("TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"))
        .arg(format!("TCP:{target}"))
        .process_group(0)
        .spawn()
        .expect("socat (installed by dev/setup)")
}

/// A TCP relay to DynamoDB that the test can cut.
pub struct Relay {
    child: std::process::Child,
    port: u16,
    cut: bool,
}

impl Relay {
    pub fn start() -> Self {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        Self {
            child: spawn(port),
            port,
            cut: false,
        }
    }

    /// Opens the relay again on the same port after a [`cut`](Self::cut).
    pub fn restore(&mut self) {
        if std::mem::replace(&mut self.cut, false) {
            self.child = spawn(self.port);
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the relay and every connection it forked.
    pub fn cut(&mut self) {
        if std::mem::replace(&mut self.cut, true) {
            return;
        }
        let pgid = self.child.id();
        let _ = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
