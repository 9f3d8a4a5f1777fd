//! Ethernet: finds the IPv4 or IPv6 header behind at most one 802.1Q tag, and swaps the MAC
//! addresses.

use dns_common::stats;

use crate::packet::{read, write, Packet};

const ETH_HLEN: usize = 14;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;

/// The network protocol a frame carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Ipv4,
    Ipv6,
}

/// The protocol and offset of the IP header: 14, or 18 behind one 802.1Q tag.
#[inline(always)]
pub fn parse<P: Packet>(p: &P) -> Result<(Proto, usize), u32> {
    let ethertype = u16::from_be(read::<u16, P>(p, 12)?);
    if ethertype == ETH_P_IPV4 {
        return Ok((Proto::Ipv4, ETH_HLEN));
    }
    if ethertype == ETH_P_IPV6 {
        return Ok((Proto::Ipv6, ETH_HLEN));
    }
    if ethertype != ETH_P_8021Q {
        return Err(stats::NOT_IP);
    }
    // The tag's own EtherType; a second tag (QinQ) is not IP to us.
    match u16::from_be(read::<u16, P>(p, 16)?) {
        ETH_P_IPV4 => Ok((Proto::Ipv4, ETH_HLEN + 4)),
        ETH_P_IPV6 => Ok((Proto::Ipv6, ETH_HLEN + 4)),
        _ => Err(stats::NOT_IP),
    }
}

/// Exchanges destination and source MAC addresses: one bounds check and three loads, one bounds
/// check and three stores (the 12 bytes as little-endian words `d0-d3`, `d4 d5 s0 s1`, `s2-s5`).
#[inline(always)]
pub fn swap_macs<P: Packet>(p: &P) -> Result<(), u32> {
    let [a, b, c]: [u32; 3] = read(p, 0)?;
    write(
        p,
        0,
        [b >> 16 | c << 16, c >> 16 | a << 16, a >> 16 | b << 16],
    )
}
