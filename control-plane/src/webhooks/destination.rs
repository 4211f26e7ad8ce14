//! Where webhooks may go: never inside the provider's own network unless the provider allows it.
//!
//! A webhook URL is chosen by whoever can register endpoints, and the control plane runs inside
//! the provider's network: loopback, link-local (cloud metadata at 169.254.169.254), private
//! and cluster-internal addresses would let a registration reach services that are not meant to
//! be reachable. Such destinations are refused at registration (the literal address, or every
//! address the name resolves to) and again at delivery, on the addresses actually connected to
//! ([`DestinationResolver`]), since a name may resolve elsewhere by then (DNS rebinding). The
//! provider can allow networks explicitly (`webhook.allowed_networks`) for internal receivers.

use std::error::Error;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long a registration waits for a name to resolve; the delivery checks again anyway.
const REGISTRATION_LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a destination is refused; shown to the registering admin and kept on a refused delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefusedDestination {
    #[error(
        "{0} is an internal address (loopback, private, link-local or reserved); allow its network in webhook.allowed_networks to deliver there"
    )]
    InternalAddress(IpAddr),
    #[error(
        "{name} resolves to the internal address {address}; allow its network in webhook.allowed_networks to deliver there"
    )]
    ResolvesInside { name: String, address: IpAddr },
    #[error("{0} names this host; allow 127.0.0.0/8 in webhook.allowed_networks to deliver there")]
    LocalName(String),
}

/// The networks webhooks may reach although they are internal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    pub allowed_networks: Vec<IpNet>,
}

impl DestinationPolicy {
    pub fn new(allowed_networks: Vec<IpNet>) -> Self {
        Self { allowed_networks }
    }

    /// Whether a webhook may be sent to `address`.
    pub fn permits(&self, address: IpAddr) -> bool {
        let address = address.to_canonical();
        !is_internal(address) || self.allowed_networks.iter().any(|network| network.contains(&address))
    }

    fn check_address(&self, address: IpAddr) -> Result<(), RefusedDestination> {
        if self.permits(address) { Ok(()) } else { Err(RefusedDestination::InternalAddress(address.to_canonical())) }
    }

    /// The URL's host as written: a literal address must be permitted; a name of this host
    /// (`localhost`) is refused unless loopback is allowed. Names are resolved by
    /// [`DestinationPolicy::check_registration`] and at delivery.
    pub fn check_literal(&self, url: &Url) -> Result<(), RefusedDestination> {
        match url.host() {
            Some(url::Host::Ipv4(address)) => self.check_address(IpAddr::V4(address)),
            Some(url::Host::Ipv6(address)) => self.check_address(IpAddr::V6(address)),
            Some(url::Host::Domain(name)) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                let local = name == "localhost" || name.ends_with(".localhost");
                if local && !self.permits(IpAddr::V4(Ipv4Addr::LOCALHOST)) {
                    return Err(RefusedDestination::LocalName(name));
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Checks a URL being registered: its literal host, then every address its name resolves
    /// to now. A name that does not resolve (yet) is accepted: delivery checks what it
    /// resolves to then.
    pub async fn check_registration(&self, url: &Url) -> Result<(), RefusedDestination> {
        self.check_literal(url)?;
        let Some(url::Host::Domain(name)) = url.host() else { return Ok(()) };
        let lookup = tokio::net::lookup_host((name, url.port_or_known_default().unwrap_or(443)));
        let Ok(Ok(addresses)) = tokio::time::timeout(REGISTRATION_LOOKUP_TIMEOUT, lookup).await else {
            return Ok(());
        };
        for address in addresses {
            if !self.permits(address.ip()) {
                return Err(RefusedDestination::ResolvesInside {
                    name: name.to_owned(),
                    address: address.ip().to_canonical(),
                });
            }
        }
        Ok(())
    }
}

/// Loopback, unspecified, private, shared (carrier-grade NAT), link-local, multicast and
/// reserved addresses: nothing a webhook receiver on the internet has. IPv4-mapped IPv6
/// addresses are judged as the IPv4 address they carry.
pub fn is_internal(address: IpAddr) -> bool {
    match address.to_canonical() {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(address: Ipv4Addr) -> bool {
    let [a, b, c, _] = address.octets();
    address.is_unspecified()
        || a == 0 // "this network"
        || address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (RFC 6598), cluster networks use it
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || address.is_multicast()
        || a >= 240 // reserved, broadcast
}

fn is_internal_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    if let Some(embedded) = embedded_v4(address) {
        return is_internal_v4(embedded);
    }
    address.is_unspecified()
        || address.is_loopback()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // deprecated site-local fec0::/10
        || address.is_multicast()
}

/// The IPv4 address inside an IPv4-compatible (`::a.b.c.d`, deprecated) or NAT64
/// (`64:ff9b::a.b.c.d`) address, which reach that IPv4 address.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let low = Ipv4Addr::from((u32::from(segments[6]) << 16) | u32::from(segments[7]));
    let compatible = segments[..6].iter().all(|s| *s == 0) && u32::from(low) > 1;
    let nat64 = segments[0] == 0x64 && segments[1] == 0xff9b && segments[2..6].iter().all(|s| *s == 0);
    (compatible || nat64).then_some(low)
}

/// The delivery client's resolver: resolves names (with the system resolver, or the one
/// given for tests) and keeps only the addresses the policy permits, so the check is on the
/// address actually connected to. A name left with none fails with [`RefusedDestination`].
#[derive(Clone, Default)]
pub struct DestinationResolver {
    policy: DestinationPolicy,
    inner: Option<Arc<dyn Resolve>>,
}

impl DestinationResolver {
    /// `inner` resolves names instead of the system resolver (tests map names with it).
    pub fn new(policy: DestinationPolicy, inner: Option<Arc<dyn Resolve>>) -> Self {
        Self { policy, inner }
    }

    pub fn policy(&self) -> &DestinationPolicy {
        &self.policy
    }
}

impl fmt::Debug for DestinationResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationResolver")
            .field("policy", &self.policy)
            .field("inner", &self.inner.as_ref().map(|_| "custom"))
            .finish()
    }
}

impl Resolve for DestinationResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = match inner {
                Some(inner) => inner.resolve(name).await?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let mut refused = None;
            let permitted: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| {
                    let ok = policy.permits(address.ip());
                    if !ok {
                        refused.get_or_insert(address.ip().to_canonical());
                    }
                    ok
                })
                .collect();
            match (permitted.is_empty(), refused) {
                (true, Some(address)) => Err(Box::new(RefusedDestination::ResolvesInside { name: host, address })
                    as Box<dyn Error + Send + Sync>),
                _ => Ok(Box::new(permitted.into_iter()) as Addrs),
            }
        })
    }
}

/// The refusal somewhere in an error's chain of causes, if that is why it failed.
pub fn refusal_in<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a RefusedDestination> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<RefusedDestination>() {
            return Some(refused);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> bool {
        is_internal(text.parse().unwrap())
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
        ] {
            assert!(refused(internal), "{internal} is internal");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "203.0.113.7",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
        ] {
            assert!(!refused(public), "{public} is public");
        }
    }

    #[test]
    fn allowed_networks_open_internal_addresses() {
        let policy = DestinationPolicy::new(vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert!(policy.permits("127.0.0.1".parse().unwrap()));
        assert!(policy.permits("::ffff:127.0.0.1".parse().unwrap()), "a mapped address as its IPv4 address");
        assert!(policy.permits("fd00::5".parse().unwrap()));
        assert!(!policy.permits("10.0.0.1".parse().unwrap()));
        assert!(!policy.permits("::1".parse().unwrap()));
        assert!(DestinationPolicy::default().permits("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn literal_hosts_and_local_names_are_checked() {
        let policy = DestinationPolicy::default();
        let check = |url: &str| policy.check_literal(&Url::parse(url).unwrap());
        assert_eq!(check("http://127.0.0.1/"), Err(RefusedDestination::InternalAddress("127.0.0.1".parse().unwrap())));
        assert!(matches!(check("http://[::ffff:127.0.0.1]/"), Err(RefusedDestination::InternalAddress(_))));
        assert!(matches!(check("http://LOCALHOST./x"), Err(RefusedDestination::LocalName(_))));
        assert!(matches!(check("http://api.localhost/x"), Err(RefusedDestination::LocalName(_))));
        assert_eq!(check("https://203.0.113.7/in"), Ok(()));
        assert_eq!(check("https://hooks.example.com/in"), Ok(()));
        let open = DestinationPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        assert_eq!(open.check_literal(&Url::parse("http://localhost:9/").unwrap()), Ok(()));
    }
}
