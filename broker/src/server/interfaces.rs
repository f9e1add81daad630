//! The machine's own addresses, for a server listening on `0.0.0.0`/`::`: clients and other
//! servers are told every global unicast address of the host, as nats-server does
//! (`getNonLocalIPsIfHostIsIPAny`). Read from procfs (Linux) so no `unsafe` interface calls
//! are needed; elsewhere the list is empty and callers fall back to the route's local address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Global unicast addresses of this host: IPv4 first, then IPv6, without duplicates.
pub fn global_unicast_addrs() -> Vec<IpAddr> {
    let v4 = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in local_v4(&v4)
        .into_iter()
        .map(IpAddr::V4)
        .chain(local_v6(&v6).into_iter().map(IpAddr::V6))
    {
        if is_global_unicast(&ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// Go's `IP.IsGlobalUnicast`: not unspecified, loopback, multicast, link-local or the IPv4
/// broadcast address (private ranges count).
pub fn is_global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_link_local()
                || a.is_broadcast())
        }
        IpAddr::V6(a) => {
            !(a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (a.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// The addresses `/proc/net/fib_trie` lists as `/32 host LOCAL` (the host's own).
fn local_v4(fib_trie: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in fib_trie.lines() {
        let t = line.trim();
        if let Some(a) = t.strip_prefix("|-- ") {
            last = a.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL") {
            if let Some(a) = last.take() {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// The addresses in `/proc/net/if_inet6` (32 hex digits per line).
fn local_v6(if_inet6: &str) -> Vec<Ipv6Addr> {
    if_inet6
        .lines()
        .filter_map(|l| {
            let hex = l.split_whitespace().next()?;
            let n = u128::from_str_radix(hex, 16).ok()?;
            (hex.len() == 32).then(|| Ipv6Addr::from(n))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIB: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
Local:
           |-- 192.0.2.2
              /32 host LOCAL
           |-- 169.254.1.1
              /32 host LOCAL
";

    const INET6: &str = "00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
fe8000000000000000fc00fffe000001 04 40 20 80     eth0
";

    #[test]
    fn reads_procfs_and_keeps_global_unicast() {
        assert_eq!(
            local_v4(FIB),
            vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(169, 254, 1, 1)
            ]
        );
        let v6 = local_v6(INET6);
        assert_eq!(v6.len(), 3);
        let kept: Vec<IpAddr> = local_v4(FIB)
            .into_iter()
            .map(IpAddr::V4)
            .chain(v6.into_iter().map(IpAddr::V6))
            .filter(is_global_unicast)
            .collect();
        assert_eq!(
            kept,
            vec![
                "192.0.2.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
    }

    #[test]
    fn this_host_has_no_loopback_in_the_list() {
        assert!(global_unicast_addrs()
            .iter()
            .all(|ip| !ip.is_loopback() && !ip.is_unspecified()));
    }
}
