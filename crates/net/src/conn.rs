//! One TCP connection's byte plumbing, shared by server connections, peer links and the client.
//!
//! [`handshake`] exchanges [`Hello`]s under a single deadline and splits the stream into a
//! [`FrameReader`] and a buffered writer. The reader owns its input buffer, so
//! [`FrameReader::read_frame`] is *cancel-safe*: when it loses a `tokio::select!` race, the
//! bytes read so far stay in the buffer and the next call continues where this one stopped.
//! Every task here relies on that to wait for "a frame or something else" without losing data.
//!
//! A connection is plain TCP or TLS; either way it is split into boxed [`Halves`], so
//! everything above this module handles both alike.
//!
//! Writers batch: after one frame is written, whatever else is already queued is written
//! behind it and the lot is flushed once, which turns a burst of small messages into one
//! syscall instead of many.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::codec::{decode_hello, encode_hello, FrameDecoder, FrameError, Hello, HELLO_LEN};
use crate::config::NetOptions;
use crate::error::NetError;

/// Initial input buffer; grows only as bytes actually arrive.
const READ_BUFFER: usize = 8 * 1024;

/// The reading side of a connection, plain or TLS.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing side of a connection, plain or TLS, buffered.
pub(crate) type FrameWriter = BufWriter<Box<dyn AsyncWrite + Send + Unpin>>;

/// A connection split for one reader and one writer.
pub(crate) struct Halves {
    read: ReadHalf,
    write: Box<dyn AsyncWrite + Send + Unpin>,
}

impl Halves {
    /// A plain TCP connection.
    pub(crate) fn plain(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Halves {
            read: Box::new(read),
            write: Box::new(write),
        }
    }

    /// A TLS connection (or any other byte stream).
    pub(crate) fn tls<S: AsyncRead + AsyncWrite + Send + Unpin + 'static>(stream: S) -> Self {
        let (read, write) = tokio::io::split(stream);
        Halves {
            read: Box::new(read),
            write: Box::new(write),
        }
    }
}

/// Turns off Nagle's algorithm: messages are small and latency-bound (a Paxos round trip is
/// several of them), and Nagle would hold each one back waiting for an ACK. Set before a
/// TLS handshake too, whose messages are as latency-bound.
pub(crate) fn no_delay(stream: &TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)
}

/// Reads a handshake and then frames from a byte stream.
pub(crate) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(io: R, max_frame: usize) -> Self {
        FrameReader {
            io,
            buf: BytesMut::with_capacity(READ_BUFFER),
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// Reads more input; `false` at end of stream.
    async fn fill(&mut self) -> Result<bool, NetError> {
        match self.io.read_buf(&mut self.buf).await {
            Ok(n) => Ok(n > 0),
            // A TLS peer that closed its socket without TLS's close_notify: an end of stream
            // like any other, because the framing itself tells a clean end (between frames)
            // from a truncated one.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads the other side's handshake. A connection closed before sending a single byte is
    /// [`NetError::Closed`]; one closed part-way is a truncation.
    pub(crate) async fn read_hello(&mut self) -> Result<Hello, NetError> {
        loop {
            if let Some(hello) = decode_hello(&mut self.buf)? {
                return Ok(hello);
            }
            if !self.fill().await? {
                return Err(match self.buf.len() {
                    0 => NetError::Closed,
                    have => FrameError::Truncated {
                        have,
                        need: HELLO_LEN,
                    }
                    .into(),
                });
            }
        }
    }

    /// Reads the next frame's payload; `None` when the stream ended cleanly between frames.
    /// Cancel-safe (see the module docs).
    pub(crate) async fn read_frame(&mut self) -> Result<Option<BytesMut>, NetError> {
        loop {
            if let Some(payload) = self.decoder.decode(&mut self.buf)? {
                return Ok(Some(payload));
            }
            if !self.fill().await? {
                self.decoder.check_eof(&self.buf)?;
                return Ok(None);
            }
        }
    }
}

/// Sends our handshake (and `behind` it, in the same flight: a client's credentials), reads
/// theirs, all within `limit`. The other side's hello is returned unjudged: whether a client
/// or a particular peer was expected is the caller's business.
pub(crate) async fn handshake(
    halves: Halves,
    ours: Hello,
    behind: &[u8],
    max_frame: usize,
    limit: Duration,
) -> Result<(FrameReader<ReadHalf>, FrameWriter, Hello), NetError> {
    let Halves { read, mut write } = halves;
    let mut reader = FrameReader::new(read, max_frame);
    let exchange = async {
        write.write_all(&encode_hello(ours)).await?;
        write.write_all(behind).await?;
        // A TLS stream holds written bytes until flushed.
        write.flush().await?;
        reader.read_hello().await
    };
    let theirs = tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| NetError::Timeout {
            what: "handshake",
            after: limit,
        })??;
    Ok((reader, BufWriter::new(write), theirs))
}

/// Sets a peer socket's `TCP_USER_TIMEOUT` and keepalive (see [`NetOptions`]), so that the
/// kernel too gives up on a connection to a peer it cannot reach within seconds rather than
/// the many minutes of its defaults.
pub(crate) fn tune_peer_socket(stream: &TcpStream, opts: &NetOptions) -> std::io::Result<()> {
    let socket = socket2::SockRef::from(stream);
    socket.set_tcp_user_timeout(Some(opts.tcp_user_timeout))?;
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(opts.keepalive)
        .with_interval(opts.keepalive);
    socket.set_tcp_keepalive(&keepalive)
}

/// Writes `first` and every frame already waiting in `queue` behind it, then flushes once.
pub(crate) async fn write_batch(
    writer: &mut FrameWriter,
    first: Bytes,
    queue: &mut mpsc::Receiver<Bytes>,
) -> Result<(), NetError> {
    writer.write_all(&first).await?;
    while let Ok(next) = queue.try_recv() {
        writer.write_all(&next).await?;
    }
    writer.flush().await?;
    Ok(())
}
