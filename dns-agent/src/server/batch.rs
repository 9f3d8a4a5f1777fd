//! `recvmmsg`/`sendmmsg` for the UDP listeners: one system call reads or writes up to
//! [`BATCH`] datagrams, where `recv_from`/`send_to` take one each (the system calls, not the
//! answers, were most of a cache hit's cost).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

/// Datagrams read or written per system call.
pub const BATCH: usize = 32;
/// Largest query read; a longer datagram is dropped (queries are a few hundred bytes).
pub const MAX_QUERY: usize = 4096;

/// Buffers for one batch of received datagrams.
pub struct RecvBatch {
    bufs: Vec<[u8; MAX_QUERY]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![[0; MAX_QUERY]; BATCH],
            // SAFETY: an all-zero sockaddr_storage is a valid (AF_UNSPEC) value.
            addrs: vec![unsafe { zeroed() }; BATCH],
            lens: vec![0; BATCH],
            count: 0,
        }
    }
}

// SAFETY: the batch owns plain bytes only; the raw pointers of a system call live on its
// stack for the duration of the call.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Reads the datagrams waiting on `fd`: how many. On a blocking socket it waits for the
    /// first one (until the socket's receive timeout: `WouldBlock`), then takes what else is
    /// there; a shut down socket gives 0.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: zeroed iovec/mmsghdr are valid; every pointer set below points into
        // `self`'s buffers, which outlive the call, with their true lengths.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: MAX_QUERY,
            };
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut self.addrs[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: `hdrs` holds BATCH initialized headers (see above).
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.count = 0;
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (len, h) in self.lens.iter_mut().zip(&hdrs).take(n) {
            // A datagram cut to the buffer is not a query we can answer.
            *len = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                usize::MAX
            } else {
                h.msg_len as usize
            };
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last [`RecvBatch::recv`]: (bytes, sender); cut or unaddressed
    /// ones are left out.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        (0..self.count).filter_map(|i| {
            let len = self.lens[i];
            if len > MAX_QUERY {
                return None;
            }
            Some((&self.bufs[i][..len], socket_addr(&self.addrs[i])?))
        })
    }
}

/// Writes `out` in one system call per [`BATCH`]: how many were sent (the rest, after an
/// error or a short write, is the caller's).
pub fn send(fd: RawFd, out: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let mut sent = 0;
    for chunk in out.chunks(BATCH) {
        // SAFETY: as in `recv`: zeroed values are valid; the pointers below point into `out`
        // and into `addrs`/`iovs` on this stack frame, which outlive the call.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut addrs: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        for (i, (bytes, peer)) in chunk.iter().enumerate() {
            iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let len = to_storage(*peer, &mut addrs[i]);
            let h = &mut hdrs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
            h.msg_namelen = len;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: the first `chunk.len()` headers are initialized (see above).
        let n = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), chunk.len() as libc::c_uint, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if sent > 0 { Ok(sent) } else { Err(e) };
        }
        sent += n as usize;
        if (n as usize) < chunk.len() {
            break;
        }
    }
    Ok(sent)
}

fn socket_addr(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let a: &libc::sockaddr_in = unsafe { &*std::ptr::from_ref(s).cast() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*std::ptr::from_ref(s).cast() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends one datagram without waiting (`WouldBlock` when the socket's buffer is full), also
/// on a blocking socket.
pub fn send_now(fd: RawFd, bytes: &[u8], peer: SocketAddr) -> io::Result<()> {
    // SAFETY: a zeroed sockaddr_storage is valid; `to_storage` fills it for `peer`.
    let mut addr: libc::sockaddr_storage = unsafe { zeroed() };
    let len = to_storage(peer, &mut addr);
    // SAFETY: `bytes` and `addr` are valid for the lengths given during the call.
    let n = unsafe {
        libc::sendto(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            std::ptr::from_ref(&addr).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn to_storage(addr: SocketAddr, s: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let a: &mut libc::sockaddr_in = unsafe { &mut *std::ptr::from_mut(s).cast() };
            a.sin_family = libc::AF_INET as libc::sa_family_t;
            a.sin_port = v4.port().to_be();
            a.sin_addr = libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(v6) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let a: &mut libc::sockaddr_in6 = unsafe { &mut *std::ptr::from_mut(s).cast() };
            a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            a.sin6_port = v6.port().to_be();
            a.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            a.sin6_flowinfo = v6.flowinfo();
            a.sin6_scope_id = v6.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn a_batch_in_and_out() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let client = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let to = server.local_addr().expect("addr");
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        for i in 0..40u8 {
            client.send_to(&[i; 10], to).expect("send");
        }
        client
            .send_to(&vec![7u8; MAX_QUERY + 1], to)
            .expect("send a long one");
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        while got.len() < 40 {
            match batch.recv(server.as_raw_fd()) {
                Ok(_) => got.extend(batch.datagrams().map(|(b, a)| (b.to_vec(), a))),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert_eq!(got.len(), 40);
        assert!(got
            .iter()
            .enumerate()
            .all(|(i, (b, a))| *b == [i as u8; 10] && *a == client.local_addr().expect("addr")));
        // The long datagram is read and left out.
        let _ = batch.recv(server.as_raw_fd());
        assert_eq!(batch.datagrams().count(), 0);

        let out: Vec<(Vec<u8>, SocketAddr)> = got;
        assert_eq!(send(server.as_raw_fd(), &out).expect("sendmmsg"), 40);
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .expect("timeout");
        for i in 0..40u8 {
            let mut buf = [0u8; 64];
            let (n, from) = client.recv_from(&mut buf).expect("recv");
            assert_eq!((&buf[..n], from), (&[i; 10][..], to));
        }
    }
}
