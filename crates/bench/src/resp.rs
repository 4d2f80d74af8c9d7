//! A minimal async Redis-protocol client — one connection, one command at a time — over
//! `synod_resp`'s encoder and parser, for Redis itself and for synod's `--resp` fronts
//! (`synod up`'s readiness probe uses it too).

use synod_net::tls::ClientTls;
use synod_resp::{encode, ParseLimits, Parsed, Parser, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{BenchError, Store};

/// A connection's bytes: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection to a Redis-protocol server.
pub struct RespConn {
    stream: Box<dyn Io>,
    /// Replies read but not yet taken.
    parser: Parser,
    /// Input read from the socket, before the parser takes it.
    chunk: Vec<u8>,
    /// The encoded command, kept to reuse its allocation.
    out: Vec<u8>,
}

impl RespConn {
    /// Connects to `addr` (`HOST:PORT`).
    pub async fn connect(addr: &str) -> Result<RespConn, BenchError> {
        Ok(RespConn::over(tcp(addr).await?))
    }

    /// Connects to `addr` over TLS with `tls` (the server's certificate must name its
    /// address), and authenticates with `password` as the `default` user.
    pub async fn connect_tls(
        addr: &str,
        tls: &ClientTls,
        password: &str,
    ) -> Result<RespConn, BenchError> {
        let stream = tcp(addr).await?;
        let ip = stream.peer_addr()?.ip();
        let secured = tls
            .connect(stream, ip)
            .await
            .map_err(|e| BenchError::Resp(format!("TLS to {addr}: {e}")))?;
        let mut conn = RespConn::over(secured);
        match conn.call(&[b"AUTH", password.as_bytes()]).await? {
            Value::Simple(ok) if ok == "OK" => Ok(conn),
            other => Err(unexpected("AUTH", other)),
        }
    }

    fn over(stream: impl Io + 'static) -> RespConn {
        RespConn {
            stream: Box::new(stream),
            parser: Parser::new(ParseLimits::replies()),
            chunk: Vec::with_capacity(16 * 1024),
            out: Vec::new(),
        }
    }

    /// Sends one command and returns its reply; an error reply is returned as a value.
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, BenchError> {
        self.out.clear();
        let parts = args.iter().map(|a| Value::bulk(*a)).collect();
        encode(&Value::Array(Some(parts)), &mut self.out);
        self.stream.write_all(&self.out).await?;
        // A TLS stream holds written bytes until flushed.
        self.stream.flush().await?;
        loop {
            match self.parser.take() {
                Ok(Some(Parsed::Value(value))) => return Ok(value),
                Ok(Some(Parsed::Refused(why))) => return Err(BenchError::Resp(why.to_string())),
                Err(e) => return Err(BenchError::Resp(e.to_string())),
                Ok(None) => {}
            }
            self.chunk.clear();
            if self.stream.read_buf(&mut self.chunk).await? == 0 {
                return Err(BenchError::Resp("the server closed the connection".into()));
            }
            self.parser.feed(&self.chunk);
        }
    }
}

impl Store for RespConn {
    async fn get(&mut self, key: &str) -> Result<(), BenchError> {
        match self.call(&[b"GET", key.as_bytes()]).await? {
            Value::Bulk(_) => Ok(()),
            other => Err(unexpected("GET", other)),
        }
    }

    async fn put(&mut self, key: &str, value: &str) -> Result<(), BenchError> {
        match self
            .call(&[b"SET", key.as_bytes(), value.as_bytes()])
            .await?
        {
            Value::Simple(ok) if ok == "OK" => Ok(()),
            other => Err(unexpected("SET", other)),
        }
    }
}

/// A TCP connection to `addr` for one small command at a time.
async fn tcp(addr: &str) -> Result<TcpStream, BenchError> {
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        BenchError::Io(std::io::Error::new(
            e.kind(),
            format!("connecting to {addr}: {e}"),
        ))
    })?;
    // Waiting to coalesce writes would only add latency.
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn unexpected(command: &str, reply: Value) -> BenchError {
    match reply {
        Value::Error(message) => BenchError::Resp(format!("{command} failed: {message}")),
        other => BenchError::Resp(format!("{command} answered {other:?}")),
    }
}
