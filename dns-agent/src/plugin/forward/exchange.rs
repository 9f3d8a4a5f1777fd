//! One query to one upstream over UDP or TCP, and the answer that matches it.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The EDNS UDP size the upstream queries advertise (the DNS flag day 2020 value).
pub const UDP_SIZE: u16 = 1232;

/// The flags of the client's query that the upstream query carries.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    pub authentic_data: bool,
    pub dnssec_ok: bool,
}

/// A query for `question` with a fresh random ID and EDNS0 (UDP size [`UDP_SIZE`]).
pub fn query(question: &Query, flags: Flags) -> Message {
    let mut m = Message::new();
    m.set_id(super::random_u64() as u16)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(flags.recursion_desired)
        .set_checking_disabled(flags.checking_disabled)
        .set_authentic_data(flags.authentic_data);
    m.add_query(question.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_SIZE);
    edns.set_dnssec_ok(flags.dnssec_ok);
    m.set_edns(edns);
    m
}

/// Whether `answer` is the response to `query`: same ID, a response, same question.
fn matches(query: &Message, answer: &Message) -> bool {
    answer.id() == query.id()
        && answer.message_type() == MessageType::Response
        && answer.queries() == query.queries()
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn encode(query: &Message) -> io::Result<Vec<u8>> {
    query
        .to_vec()
        .map_err(|e| invalid(format!("encoding query: {e}")))
}

/// Sends `query` over UDP and waits up to `timeout` for its answer; datagrams that are not
/// its answer are dropped.
pub async fn udp(addr: SocketAddr, query: &Message, timeout: Duration) -> io::Result<Message> {
    let bytes = encode(query)?;
    let local: IpAddr = match addr {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((local, 0)).await?;
    // Connected: only the upstream's datagrams arrive, and ICMP errors are reported.
    sock.connect(addr).await?;
    sock.send(&bytes).await?;
    let wait = async {
        let mut buf = vec![0u8; 65535];
        loop {
            let n = sock.recv(&mut buf).await?;
            match Message::from_vec(&buf[..n]) {
                Ok(answer) if matches(query, &answer) => return Ok(answer),
                Ok(_) => log::debug!("forward: {addr}: dropping an answer to another query"),
                Err(e) => log::debug!("forward: {addr}: dropping a malformed answer: {e}"),
            }
        }
    };
    tokio::time::timeout(timeout, wait)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}

/// Sends `query` over a new TCP connection and reads its answer, all within `timeout`.
pub async fn tcp(addr: SocketAddr, query: &Message, timeout: Duration) -> io::Result<Message> {
    let bytes = encode(query)?;
    let len = u16::try_from(bytes.len()).map_err(|_| invalid("query too large"))?;
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;
        loop {
            let n = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(n)];
            stream.read_exact(&mut buf).await?;
            match Message::from_vec(&buf) {
                Ok(answer) if matches(query, &answer) => return Ok(answer),
                Ok(_) => log::debug!("forward: {addr}: dropping an answer to another query"),
                Err(e) => return Err(invalid(format!("malformed answer: {e}"))),
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "timed out"))?
}
