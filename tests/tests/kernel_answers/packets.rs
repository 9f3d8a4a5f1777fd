//! Reference packets for the byte-exact kernel tests: queries in, expected answers out.
//!
//! Written independently of the kernel code: plain byte vectors, checksums summed the textbook
//! way (RFC 1071, big-endian 16-bit words over a concatenated buffer).

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const NODE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const CLIENT_IP: [u8; 4] = [10, 244, 1, 7];
pub const SERVICE_IP: [u8; 4] = [10, 96, 0, 10];
pub const OTHER_SERVICE_IP: [u8; 4] = [169, 254, 20, 10];
pub const CLIENT_IP6: [u8; 16] = [
    0xfd, 0x00, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x07,
];
/// An IPv6 service address (a dual-stack kube-dns ClusterIP: fd00:96::a).
pub const SERVICE_IP6: [u8; 16] = [0xfd, 0x00, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a];
/// A second IPv6 service address the tests configure (a node-local one: fd00:a9fe::a).
pub const OTHER_SERVICE_IP6: [u8; 16] = [
    0xfd, 0x00, 0xa9, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
];
pub const CLIENT_PORT: u16 = 40123;
pub const DNS_PORT: u16 = 53;

/// Internet checksum of the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let data: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let hi = pair[0] as u32;
        let lo = pair.get(1).copied().unwrap_or(0) as u32;
        sum += hi << 8 | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Wire format of a dotted name, case kept ("Web.default.svc." → 3Web7default3svc0).
pub fn wire(name: &str) -> Vec<u8> {
    let mut w = Vec::new();
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        assert!(label.len() <= 63, "label too long: {label}");
        w.push(label.len() as u8);
        w.extend_from_slice(label.as_bytes());
    }
    w.push(0);
    w
}

/// An EDNS(0) OPT record as a client sends it.
#[derive(Clone, Debug)]
pub struct Opt {
    pub udp_size: u16,
    pub ext_rcode: u8,
    pub version: u8,
    pub flags: u16,
    pub options: Vec<(u16, Vec<u8>)>,
}

impl Opt {
    pub fn new(udp_size: u16) -> Self {
        Opt {
            udp_size,
            ext_rcode: 0,
            version: 0,
            flags: 0,
            options: Vec::new(),
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let rdata: Vec<u8> = self
            .options
            .iter()
            .flat_map(|(code, data)| {
                let mut o = code.to_be_bytes().to_vec();
                o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                o.extend_from_slice(data);
                o
            })
            .collect();
        let mut b = vec![0];
        b.extend_from_slice(&41u16.to_be_bytes());
        b.extend_from_slice(&self.udp_size.to_be_bytes());
        b.extend_from_slice(&[self.ext_rcode, self.version]);
        b.extend_from_slice(&self.flags.to_be_bytes());
        b.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        b.extend_from_slice(&rdata);
        b
    }
}

/// A DNS header.
pub fn header(id: u16, flags: u16, qd: u16, an: u16, ns: u16, ar: u16) -> Vec<u8> {
    [id, flags, qd, an, ns, ar]
        .iter()
        .flat_map(|v| v.to_be_bytes())
        .collect()
}

/// A standard query: one question (class IN unless `qclass` says otherwise) and an optional OPT.
#[derive(Clone, Debug)]
pub struct Query {
    pub id: u16,
    /// Second header word as sent (RD, CD, AD... bits).
    pub flags: u16,
    /// Question name, wire format, case as sent.
    pub qname: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub opt: Option<Opt>,
}

pub const RD: u16 = 0x0100;
pub const AD: u16 = 0x0020;
pub const CD: u16 = 0x0010;
pub const DO: u16 = 0x8000;

impl Query {
    pub fn a(name: &str) -> Self {
        Query {
            id: 0x4a7b,
            flags: RD,
            qname: wire(name),
            qtype: 1,
            qclass: 1,
            opt: None,
        }
    }

    /// The same question for AAAA records.
    pub fn aaaa(name: &str) -> Self {
        Query {
            qtype: 28,
            ..Query::a(name)
        }
    }

    pub fn with_opt(mut self, opt: Opt) -> Self {
        self.opt = Some(opt);
        self
    }

    pub fn question(&self) -> Vec<u8> {
        let mut q = self.qname.clone();
        q.extend_from_slice(&self.qtype.to_be_bytes());
        q.extend_from_slice(&self.qclass.to_be_bytes());
        q
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut m = header(self.id, self.flags, 1, 0, 0, self.opt.is_some() as u16);
        m.extend_from_slice(&self.question());
        if let Some(opt) = &self.opt {
            m.extend_from_slice(&opt.bytes());
        }
        m
    }

    /// The response the contract prescribes for this query and these A records.
    pub fn answer(&self, ttl: u32, addrs: &[[u8; 4]]) -> Vec<u8> {
        let rdata: Vec<&[u8]> = addrs.iter().map(|a| &a[..]).collect();
        self.answer_records(1, ttl, &rdata)
    }

    /// The response the contract prescribes for this query and these AAAA records.
    pub fn answer_aaaa(&self, ttl: u32, addrs: &[[u8; 16]]) -> Vec<u8> {
        let rdata: Vec<&[u8]> = addrs.iter().map(|a| &a[..]).collect();
        self.answer_records(28, ttl, &rdata)
    }

    /// The response with one answer of type `rtype`, class IN, per RDATA, in order.
    fn answer_records(&self, rtype: u16, ttl: u32, rdata: &[&[u8]]) -> Vec<u8> {
        let flags = 0x8000 | 0x0400 | (self.flags & RD) | (self.flags & CD);
        let mut m = header(
            self.id,
            flags,
            1,
            rdata.len() as u16,
            0,
            self.opt.is_some() as u16,
        );
        m.extend_from_slice(&self.question());
        for r in rdata {
            m.extend_from_slice(&[0xc0, 0x0c]);
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1]);
            m.extend_from_slice(&ttl.to_be_bytes());
            m.extend_from_slice(&(r.len() as u16).to_be_bytes());
            m.extend_from_slice(r);
        }
        if let Some(opt) = &self.opt {
            let echoed = Opt {
                udp_size: opt.udp_size,
                ext_rcode: 0,
                version: 0,
                flags: opt.flags & DO,
                options: Vec::new(),
            };
            m.extend_from_slice(&echoed.bytes());
        }
        m
    }
}

/// How the query's UDP checksum field is filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpCsum {
    /// The correct checksum.
    Correct,
    /// Zero (no checksum, legal over IPv4).
    Zero,
    /// Only the pseudo-header sum, as a socket leaves it for offload (CHECKSUM_PARTIAL).
    Partial,
}

/// What follows the IPv4 header.
#[derive(Clone, Debug)]
pub enum L4 {
    Udp {
        sport: u16,
        dport: u16,
        csum: UdpCsum,
        /// UDP length field, when it must lie.
        len: Option<u16>,
        payload: Vec<u8>,
    },
    /// Any other protocol's bytes, as they are.
    Raw(Vec<u8>),
}

/// The IPv6 header of a frame (when set, it replaces the IPv4 fields).
#[derive(Clone, Debug)]
pub struct Ip6 {
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow: u32,
    pub hop_limit: u8,
    /// Next header of the fixed header: 17, or the first extension header's type.
    pub next: u8,
    /// Extension headers between the fixed header and what `l4` holds, as bytes.
    pub ext: Vec<u8>,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Payload length, when it must lie.
    pub payload_len: Option<u16>,
}

/// An Ethernet frame carrying IPv4, or IPv6 when `ip6` is set.
#[derive(Clone, Debug)]
pub struct Frame {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// 802.1Q tags (TCI), outermost first.
    pub vlans: Vec<u16>,
    pub ethertype: u16,
    pub tos: u8,
    pub ident: u16,
    /// Flags and fragment offset.
    pub frag: u16,
    pub ttl: u8,
    pub proto: u8,
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub ip_options: Vec<u8>,
    /// IPv4 total length, when it must lie.
    pub tot_len: Option<u16>,
    pub l4: L4,
    /// Bytes after the IP packet (Ethernet padding).
    pub trailer: Vec<u8>,
    /// IPv6 instead of IPv4 (the IPv4 fields are then unused).
    pub ip6: Option<Ip6>,
}

impl Frame {
    /// A DNS query from the client to the service address.
    pub fn query(dns: Vec<u8>) -> Self {
        Frame {
            dst_mac: NODE_MAC,
            src_mac: CLIENT_MAC,
            vlans: Vec::new(),
            ethertype: 0x0800,
            tos: 0,
            ident: 0x1c46,
            frag: 0x4000,
            ttl: 63,
            proto: 17,
            src_ip: CLIENT_IP,
            dst_ip: SERVICE_IP,
            ip_options: Vec::new(),
            tot_len: None,
            l4: L4::Udp {
                sport: CLIENT_PORT,
                dport: DNS_PORT,
                csum: UdpCsum::Correct,
                len: None,
                payload: dns,
            },
            trailer: Vec::new(),
            ip6: None,
        }
    }

    /// The same DNS query from the client to the IPv6 service address.
    pub fn query6(dns: Vec<u8>) -> Self {
        Frame {
            ethertype: 0x86dd,
            ip6: Some(Ip6 {
                traffic_class: 0,
                flow: 0x5_1f2e,
                hop_limit: 63,
                next: 17,
                ext: Vec::new(),
                src: CLIENT_IP6,
                dst: SERVICE_IP6,
                payload_len: None,
            }),
            ..Frame::query(dns)
        }
    }

    /// The IPv6 header, for a frame made by [`Frame::query6`].
    pub fn ip6_mut(&mut self) -> &mut Ip6 {
        self.ip6.as_mut().expect("an IPv6 frame")
    }

    fn pseudo(&self, udp_len: u16) -> Vec<u8> {
        if let Some(h) = &self.ip6 {
            // RFC 8200 §8.1: addresses, upper-layer length (32 bits), zeros, next header 17.
            let mut p = h.src.to_vec();
            p.extend_from_slice(&h.dst);
            p.extend_from_slice(&u32::from(udp_len).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 17]);
            return p;
        }
        let mut p = self.src_ip.to_vec();
        p.extend_from_slice(&self.dst_ip);
        p.extend_from_slice(&[0, 17]);
        p.extend_from_slice(&udp_len.to_be_bytes());
        p
    }

    fn l4_bytes(&self) -> Vec<u8> {
        match &self.l4 {
            L4::Raw(b) => b.clone(),
            L4::Udp {
                sport,
                dport,
                csum,
                len,
                payload,
            } => {
                let real_len = (8 + payload.len()) as u16;
                let mut u = sport.to_be_bytes().to_vec();
                u.extend_from_slice(&dport.to_be_bytes());
                u.extend_from_slice(&len.unwrap_or(real_len).to_be_bytes());
                u.extend_from_slice(&[0, 0]);
                let sum = match csum {
                    UdpCsum::Zero => 0,
                    UdpCsum::Correct => match checksum(&[&self.pseudo(real_len), &u, payload]) {
                        0 => 0xffff,
                        c => c,
                    },
                    UdpCsum::Partial => !checksum(&[&self.pseudo(real_len)]),
                };
                u[6..8].copy_from_slice(&sum.to_be_bytes());
                u.extend_from_slice(payload);
                u
            }
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut f = self.dst_mac.to_vec();
        f.extend_from_slice(&self.src_mac);
        for tci in &self.vlans {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&self.ethertype.to_be_bytes());
        let l4 = self.l4_bytes();
        if let Some(h) = &self.ip6 {
            let payload_len = h.payload_len.unwrap_or((h.ext.len() + l4.len()) as u16);
            let word = 6u32 << 28 | u32::from(h.traffic_class) << 20 | (h.flow & 0xf_ffff);
            f.extend_from_slice(&word.to_be_bytes());
            f.extend_from_slice(&payload_len.to_be_bytes());
            f.extend_from_slice(&[h.next, h.hop_limit]);
            f.extend_from_slice(&h.src);
            f.extend_from_slice(&h.dst);
            f.extend_from_slice(&h.ext);
            f.extend_from_slice(&l4);
            f.extend_from_slice(&self.trailer);
            return f;
        }
        assert_eq!(self.ip_options.len() % 4, 0, "IP options pad to 4 bytes");
        let ihl = 5 + self.ip_options.len() / 4;
        let tot_len = self.tot_len.unwrap_or((ihl * 4 + l4.len()) as u16);
        let mut ip = vec![0x40 | ihl as u8, self.tos];
        ip.extend_from_slice(&tot_len.to_be_bytes());
        ip.extend_from_slice(&self.ident.to_be_bytes());
        ip.extend_from_slice(&self.frag.to_be_bytes());
        ip.extend_from_slice(&[self.ttl, self.proto, 0, 0]);
        ip.extend_from_slice(&self.src_ip);
        ip.extend_from_slice(&self.dst_ip);
        ip.extend_from_slice(&self.ip_options);
        let c = checksum(&[&ip]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&l4);
        f.extend_from_slice(&self.trailer);
        f
    }

    /// The frame the kernel must send back: addresses and ports swapped, TTL (hop limit) 64,
    /// the same IP identification, flags, TOS and options (IPv6: traffic class and flow label),
    /// `dns` as payload, correct checksums, no padding.
    pub fn reply(&self, dns: Vec<u8>) -> Vec<u8> {
        let L4::Udp { sport, dport, .. } = &self.l4 else {
            panic!("not a UDP frame");
        };
        let r = Frame {
            dst_mac: self.src_mac,
            src_mac: self.dst_mac,
            ttl: 64,
            src_ip: self.dst_ip,
            dst_ip: self.src_ip,
            tot_len: None,
            l4: L4::Udp {
                sport: *dport,
                dport: *sport,
                csum: UdpCsum::Correct,
                len: None,
                payload: dns,
            },
            trailer: Vec::new(),
            ip6: self.ip6.as_ref().map(|h| Ip6 {
                hop_limit: 64,
                src: h.dst,
                dst: h.src,
                payload_len: None,
                ..h.clone()
            }),
            ..self.clone()
        };
        r.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_matches_a_known_ipv4_header() {
        // The example header of RFC 1071 style walkthroughs (checksum 0xb861).
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&h]), 0xb861);
    }

    #[test]
    fn ipv6_frames_carry_a_verifiable_udp_checksum() {
        let f = Frame::query6(Query::a("web.default.svc.cluster.local.").bytes()).bytes();
        assert_eq!(f[12..14], [0x86, 0xdd]);
        assert_eq!(f[14] >> 4, 6);
        let plen = usize::from(u16::from_be_bytes([f[18], f[19]]));
        assert_eq!(14 + 40 + plen, f.len());
        let mut pseudo = f[22..54].to_vec();
        pseudo.extend_from_slice(&(plen as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(checksum(&[&pseudo, &f[54..]]), 0);
    }
}
