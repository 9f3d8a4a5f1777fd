//! UDP: is the datagram addressed to a configured service address and port; port swap.

use dns_common::stats;

use crate::{
    ip::Ip,
    packet::{read, write, Packet},
    DNS_CONFIG,
};

/// Longest datagram looked at (a query this large is left to userspace).
pub const MAX_UDP_LEN: usize = 4096;

/// Where the UDP header is and how long the datagram is.
#[derive(Clone, Copy)]
pub struct Udp {
    /// Offset of the UDP header in the packet.
    pub off: usize,
    /// UDP length (header included), equal to the IP payload length.
    pub len: usize,
}

/// Accepts only datagrams to one of `DNS_CONFIG`'s addresses and its port.
#[inline(always)]
pub fn parse<P: Packet>(p: &P, ip: &Ip) -> Result<Udp, u32> {
    let off = ip.off() + ip.hdr_len();
    let dport_be: u16 = read(p, off + 2)?;
    let len = u16::from_be(read::<u16, P>(p, off + 4)?) as usize;
    let cfg = DNS_CONFIG.get_ptr(0).ok_or(stats::NOT_SERVICE)?;
    // SAFETY: a map value pointer stays valid for the whole program run.
    let cfg = unsafe { &*cfg };
    if cfg.port_be != dport_be || !ip.to_service(cfg) {
        return Err(stats::NOT_SERVICE);
    }
    if len != ip.payload_len() {
        return Err(stats::MALFORMED);
    }
    // Over IPv6 the checksum is mandatory: the stack drops a datagram whose field is 0, so the
    // kernel must not answer it either. (Its value cannot be checked: a pod's datagrams come
    // with it left to offload.)
    if let Ip::V6(_) = ip {
        if read::<u16, P>(p, off + 6)? == 0 {
            return Err(stats::MALFORMED);
        }
    }
    // Keeps every offset the verifier sees well below its 64 KiB packet-offset limit.
    if len > MAX_UDP_LEN {
        return Err(stats::TOO_BIG);
    }
    Ok(Udp { off, len })
}

/// Swaps source and destination ports; returns their little-endian checksum contribution.
#[inline(always)]
pub fn swap_ports<P: Packet>(p: &P, udp: &Udp) -> Result<u64, u32> {
    let ports: [u16; 2] = read(p, udp.off)?;
    write(p, udp.off, [ports[1], ports[0]])?;
    Ok(ports[0] as u64 + ports[1] as u64)
}
