//! A real `nginx` master in the foreground (`-g 'daemon off;'`) with its own prefix in a
//! temporary directory: an HTTP server and an HTTPS server (a self-signed certificate made
//! with the openssl CLI) on free loopback ports, both proxying to upstream `web` from the
//! upstreams file ipdrift owns, and `DIR/sites/*.conf` for a test to break the rest of the
//! configuration with. Synchronous (std::process), killed when dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

/// A running nginx master with one worker.
pub struct Nginx {
    dir: TempDir,
    http_port: u16,
    https_port: u16,
    child: Child,
}

impl Nginx {
    /// Writes nginx.conf, a certificate for `www.example.test` and `upstreams` as the
    /// upstreams file (nginx refuses a `proxy_pass` to an upstream that no file defines),
    /// starts nginx and waits until both ports answer.
    pub fn start(upstreams: &str) -> Nginx {
        let binary = super::require_binary("nginx", "apt-get install nginx");
        let dir = tempfile::Builder::new()
            .prefix("ipdrift-nginx-")
            .tempdir()
            .expect("create a temporary directory for nginx");
        let http_port = super::free_port();
        let https_port = super::free_port();
        make_certificate(dir.path());
        fs::create_dir(dir.path().join("sites")).unwrap();
        fs::write(
            dir.path().join("nginx.conf"),
            render_config(dir.path(), http_port, https_port),
        )
        .unwrap();
        fs::write(dir.path().join("upstreams.conf"), upstreams).unwrap();
        let log = File::create(dir.path().join("nginx.out")).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx {
            dir,
            http_port,
            https_port,
            child,
        };
        let child = &mut nginx.child;
        let out = nginx.dir.path().join("nginx.out");
        let error_log = nginx.dir.path().join("error.log");
        let ready = super::wait_until(Duration::from_secs(10), || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "nginx exited with {status} at start:\n{}\n{}",
                    fs::read_to_string(&out).unwrap_or_default(),
                    fs::read_to_string(&error_log).unwrap_or_default()
                );
            }
            std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", https_port)).is_ok()
                && fs::metadata(nginx.dir.path().join("nginx.pid")).is_ok()
        });
        assert!(ready, "nginx did not listen within 10s");
        nginx
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("nginx.conf")
    }

    /// The file ipdrift owns, included in `http {}`.
    pub fn upstreams_path(&self) -> PathBuf {
        self.dir.path().join("upstreams.conf")
    }

    pub fn pid_path(&self) -> PathBuf {
        self.dir.path().join("nginx.pid")
    }

    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    pub fn https_port(&self) -> u16 {
        self.https_port
    }

    /// The master's pid (the child this harness started).
    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }

    /// Reloads nginx has started so far. At each SIGHUP nginx 1.22 logs two lines at
    /// `notice`: "signal 1 (SIGHUP) received from P, reconfiguring", then "reconfiguring"
    /// alone, whether the new configuration then loads or not; the second is counted.
    pub fn reloads(&self) -> usize {
        self.error_log()
            .lines()
            .filter(|line| line.trim_end().ends_with(": reconfiguring"))
            .count()
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The pids of the master's children, sorted (workers still shutting down included).
    pub fn children(&self) -> Vec<u32> {
        let master = self.master_pid();
        let mut out: Vec<u32> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        let after = &s[s.rfind(')')? + 1..];
                        after.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    == Some(master)
            })
            .collect();
        out.sort();
        out
    }

    /// `GET /` over TLS (curl, certificate not checked): `(status, body)`, or `None`.
    pub fn https_get(&self) -> Option<(u16, String)> {
        let out = Command::new(super::require_binary("curl", "apt-get install curl"))
            .args(["-sk", "--max-time", "5", "-w", "\n%{http_code}"])
            .arg(format!("https://127.0.0.1:{}/", self.https_port))
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n')?;
        Some((status.trim().parse().ok()?, body.to_string()))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL leaves the workers; they exit once they see the master gone, but the
        // harness ends them too.
        let children = self.children();
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in children {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// A self-signed certificate for www.example.test: DIR/cert.pem and DIR/key.pem.
fn make_certificate(dir: &Path) {
    let openssl = super::require_binary("openssl", "apt-get install openssl");
    let out = Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=www.example.test",
            "-keyout",
        ])
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn render_config(dir: &Path, http_port: u16, https_port: u16) -> String {
    let d = dir.display();
    format!(
        "pid {d}/nginx.pid;\n\
         error_log {d}/error.log notice;\n\
         worker_processes 1;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/client_body;\n\
         \x20   proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n\
         \x20   uwsgi_temp_path {d}/uwsgi;\n\
         \x20   scgi_temp_path {d}/scgi;\n\
         \x20   proxy_connect_timeout 1s;\n\
         \x20   include {d}/upstreams.conf;\n\
         \x20   include {d}/sites/*.conf;\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{http_port};\n\
         \x20       location / {{ proxy_pass http://web; }}\n\
         \x20   }}\n\
         \x20   server {{\n\
         \x20       listen 127.0.0.1:{https_port} ssl;\n\
         \x20       ssl_certificate {d}/cert.pem;\n\
         \x20       ssl_certificate_key {d}/key.pem;\n\
         \x20       location / {{ proxy_pass http://web; }}\n\
         \x20   }}\n\
         }}\n"
    )
}
