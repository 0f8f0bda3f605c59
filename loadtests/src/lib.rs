//! Load generators for Agora. Every target is a loopback address; every run is bounded in
//! time and count. See README.md.

use std::net::IpAddr;

/// Refuses any target that is not on this machine's loopback range.
pub fn require_loopback(url: &str) -> anyhow::Result<()> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host).trim_matches(['[', ']']);
    let loopback = host == "localhost" || host.parse::<IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false);
    anyhow::ensure!(loopback, "{url}: load tests only target loopback addresses (127.0.0.0/8, ::1)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_allowed() {
        for ok in ["http://127.0.0.1:8081", "http://127.3.2.1:1/x", "http://localhost:8081", "http://[::1]:80"] {
            assert!(require_loopback(ok).is_ok(), "{ok}");
        }
        for bad in ["http://10.0.0.1:8081", "http://example.com", "http://192.168.1.2:80/", "http://[2001:db8::1]:80"] {
            assert!(require_loopback(bad).is_err(), "{bad}");
        }
    }
}

pub mod load;
pub mod push;
