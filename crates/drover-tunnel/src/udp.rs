//! A UDP socket received on through tokio and sent on directly.
//!
//! tokio's `try_send_to` fails with `WouldBlock` until the reactor has seen the socket become
//! writable, which loses the first datagrams of a fresh socket (a handshake initiation sent right
//! after binding). Sending on a duplicate of the non-blocking descriptor has no such gap; it only
//! fails when the kernel buffer is really full, like a kernel WireGuard would drop.

use std::io;
use std::net::SocketAddr;

pub(crate) struct UdpCarrier {
    recv: tokio::net::UdpSocket,
    send: std::net::UdpSocket,
}

impl UdpCarrier {
    /// Binds `addr`. Must run inside a tokio runtime.
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpCarrier> {
        let socket = std::net::UdpSocket::bind(addr)?;
        socket.set_nonblocking(true)?;
        let send = socket.try_clone()?;
        Ok(UdpCarrier {
            recv: tokio::net::UdpSocket::from_std(socket)?,
            send,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.send.local_addr()
    }

    pub(crate) fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.send.send_to(datagram, to)
    }

    pub(crate) async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.recv.recv_from(buf).await
    }
}
