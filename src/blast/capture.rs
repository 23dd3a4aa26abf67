//! `--pcap`: the synthetic traffic as Ethernet/IPv4/UDP frames with valid checksums, built
//! with `pnet_packet`, kept in memory up to a limit and written whole at the end.
//!
//! The clients and the server each keep a capture of their own (they share nothing but the
//! wire); [`merge`] joins the two files by time, as two taps on one link would.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, MutableIpv4Packet};
use pnet_packet::udp::{self, MutableUdpPacket};

const ETHERNET_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;

struct State {
    writer: PcapWriter<Vec<u8>>,
    frames: u64,
}

/// A bounded capture of datagrams.
pub struct Capture {
    state: Mutex<State>,
    limit: u64,
}

/// One frame: Ethernet (zero MACs) / IPv4 / UDP / `payload`, checksums filled in.
pub fn frame(source: SocketAddr, destination: SocketAddr, payload: &[u8]) -> Option<Vec<u8>> {
    let (IpAddr::V4(src), IpAddr::V4(dst)) = (source.ip(), destination.ip()) else {
        return None;
    };
    let udp_len = UDP_LEN + payload.len();
    let ip_len = IPV4_LEN + udp_len;
    let total = u16::try_from(ip_len).ok()?;
    let mut bytes = vec![0u8; ETHERNET_LEN + ip_len];
    {
        let mut ethernet = MutableEthernetPacket::new(&mut bytes)?;
        ethernet.set_ethertype(EtherTypes::Ipv4);
    }
    {
        let mut ip = MutableIpv4Packet::new(&mut bytes[ETHERNET_LEN..])?;
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(total);
        ip.set_ttl(64);
        ip.set_flags(2); // don't fragment
        ip.set_next_level_protocol(IpNextHeaderProtocols::Udp);
        ip.set_source(src);
        ip.set_destination(dst);
        let checksum = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(checksum);
    }
    {
        let mut datagram = MutableUdpPacket::new(&mut bytes[ETHERNET_LEN + IPV4_LEN..])?;
        datagram.set_source(source.port());
        datagram.set_destination(destination.port());
        datagram.set_length(udp_len as u16);
        datagram.set_payload(payload);
        // RFC 768: a computed checksum of zero is sent as all ones (zero means "none").
        let checksum = match udp::ipv4_checksum(&datagram.to_immutable(), &src, &dst) {
            0 => 0xffff,
            sum => sum,
        };
        datagram.set_checksum(checksum);
    }
    Some(bytes)
}

impl Capture {
    /// A capture that keeps at most `limit` frames.
    pub fn new(limit: u64) -> Self {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(Vec::new(), header).expect("writing to memory");
        Self {
            state: Mutex::new(State { writer, frames: 0 }),
            limit,
        }
    }

    /// Records a datagram from `source` to `destination`, unless the limit is reached.
    pub fn record(&self, source: SocketAddr, destination: SocketAddr, payload: &[u8]) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.frames >= self.limit {
            return;
        }
        let Some(bytes) = frame(source, destination, payload) else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let packet = PcapPacket::new(now, bytes.len() as u32, &bytes);
        if state.writer.write_packet(&packet).is_ok() {
            state.frames += 1;
        }
    }

    /// Frames recorded.
    pub fn frames(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.frames)
    }

    /// The pcap file's bytes so far; the capture starts over empty.
    pub fn take_bytes(&self) -> Vec<u8> {
        let fresh = Self::new(self.limit)
            .state
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::mem::replace(&mut *state, fresh).writer.into_writer()
    }
}

/// Joins pcap files (as [`Capture::take_bytes`] writes them) into one, frames in time order
/// (a stable sort: one side's frames keep their order), at most `limit` frames. Returns the
/// file and its frame count.
pub fn merge(parts: &[Vec<u8>], limit: u64) -> (Vec<u8>, u64) {
    let mut frames: Vec<(std::time::Duration, Vec<u8>)> = Vec::new();
    for part in parts {
        let Ok(mut reader) = PcapReader::new(part.as_slice()) else {
            continue;
        };
        while let Some(Ok(packet)) = reader.next_packet() {
            frames.push((packet.timestamp, packet.data.into_owned()));
        }
    }
    frames.sort_by_key(|(at, _)| *at);
    frames.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).expect("writing to memory");
    let mut written = 0;
    for (at, bytes) in &frames {
        let packet = PcapPacket::new(*at, bytes.len() as u32, bytes);
        if writer.write_packet(&packet).is_ok() {
            written += 1;
        }
    }
    (writer.into_writer(), written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::Packet;
    use pnet_packet::ipv4::Ipv4Packet;
    use pnet_packet::udp::UdpPacket;

    const LOOPBACK: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

    #[test]
    fn frames_carry_valid_checksums() {
        let src = SocketAddr::from((LOOPBACK, 40000));
        let dst = SocketAddr::from((LOOPBACK, 33001));
        let bytes = frame(src, dst, b"hello").unwrap();
        let ip = Ipv4Packet::new(&bytes[ETHERNET_LEN..]).unwrap();
        assert_eq!(ipv4::checksum(&ip), ip.get_checksum());
        assert_eq!(ip.get_total_length() as usize, IPV4_LEN + UDP_LEN + 5);
        let datagram = UdpPacket::new(ip.payload()).unwrap();
        assert_eq!(datagram.get_destination(), 33001);
        assert_eq!(
            udp::ipv4_checksum(&datagram, &LOOPBACK, &LOOPBACK),
            datagram.get_checksum()
        );
        assert_eq!(datagram.payload(), b"hello");
    }

    #[test]
    fn a_zero_udp_checksum_is_sent_as_all_ones() {
        let src = SocketAddr::from((LOOPBACK, 40000));
        let dst = SocketAddr::from((LOOPBACK, 33001));
        // Find a two-byte payload whose checksum computes to zero.
        let payload = (0..=u16::MAX)
            .map(u16::to_be_bytes)
            .find(|p| {
                let bytes = frame(src, dst, p).unwrap();
                let ip = Ipv4Packet::new(&bytes[ETHERNET_LEN..]).unwrap();
                let datagram = UdpPacket::new(ip.payload()).unwrap();
                datagram.get_checksum() == 0xffff
            })
            .expect("some payload sums to zero");
        let mut bytes = frame(src, dst, &payload).unwrap();
        let mut raw = MutableUdpPacket::new(&mut bytes[ETHERNET_LEN + IPV4_LEN..]).unwrap();
        raw.set_checksum(0);
        assert_eq!(
            udp::ipv4_checksum(&raw.to_immutable(), &LOOPBACK, &LOOPBACK),
            0
        );
    }

    #[test]
    fn two_sides_merge_in_time_order_within_the_limit() {
        let (client, server) = (Capture::new(10), Capture::new(10));
        let a = SocketAddr::from((LOOPBACK, 1));
        // pcap stamps have microseconds: frames a millisecond apart have an order.
        let tick = || std::thread::sleep(std::time::Duration::from_millis(2));
        client.record(a, a, b"1");
        tick();
        server.record(a, a, b"2");
        tick();
        client.record(a, a, b"3");
        let (bytes, frames) = merge(&[client.take_bytes(), server.take_bytes()], 2);
        assert_eq!(frames, 2);
        let mut reader = PcapReader::new(bytes.as_slice()).unwrap();
        let mut payloads = Vec::new();
        while let Some(Ok(packet)) = reader.next_packet() {
            payloads.push(*packet.data.last().unwrap());
        }
        assert_eq!(payloads, b"12");
    }

    #[test]
    fn stops_at_the_limit() {
        let capture = Capture::new(2);
        let a = SocketAddr::from((LOOPBACK, 1));
        for _ in 0..5 {
            capture.record(a, a, b"x");
        }
        assert_eq!(capture.frames(), 2);
        let bytes = capture.take_bytes();
        // The pcap magic number, in either byte order.
        assert!(matches!(
            bytes[..4],
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xd4, 0xc3, 0xb2, 0xa1]
        ));
    }
}
