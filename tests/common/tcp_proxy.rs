//! A TCP proxy on 127.0.0.1 that can cut the network for a while: live connections are closed under
//! both ends (as a restarted NAT or load balancer would) and new ones are accepted and dropped at
//! once until the cut ends. For the database-connection tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The running proxy (its threads end with the process).
pub struct TcpProxy {
    pub port: u16,
    down_until: Arc<Mutex<Option<Instant>>>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl TcpProxy {
    /// Forward a local port to `upstream`.
    pub fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down_until: Arc<Mutex<Option<Instant>>> = Arc::default();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (d, l) = (down_until.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if d.lock().unwrap().is_some_and(|t| Instant::now() < t) {
                    drop(client); // the network is down: nothing gets through
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                l.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(client, s2));
                std::thread::spawn(move || pump(server, c2));
            }
        });
        TcpProxy { port, down_until, live }
    }

    /// Close every live connection and refuse new ones for `d`.
    pub fn cut_for(&self, d: Duration) {
        *self.down_until.lock().unwrap() = Some(Instant::now() + d);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
