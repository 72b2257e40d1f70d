//! The kernel log receiver inside the tunnel: plain TCP, one JSON record per line.

use std::net::Ipv6Addr;

use drover_service::{Drover, KernelLogLine};
use drover_tunnel::{TunnelListener, TunnelStream};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Longest line accepted; longer ones are cut.
const MAX_LINE: usize = 16 * 1024;
/// Lines written to the store in one batch.
const BATCH: usize = 200;

pub(crate) async fn serve(
    listener: TunnelListener,
    drover: Drover,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                tasks.spawn(receive(
                    stream,
                    *remote.ip(),
                    drover.clone(),
                    cancel.clone(),
                ));
            }
            Err(err) => tracing::warn!(error = %err, "kernel log accept failed"),
        }
    }
}

async fn receive(stream: TunnelStream, from: Ipv6Addr, drover: Drover, cancel: CancellationToken) {
    let mut reader = BufReader::new(stream);
    let mut batch: Vec<KernelLogLine> = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = tokio::select! {
            () = cancel.cancelled() => break,
            read = read_line(&mut reader, &mut buf) => read,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf);
                let line = text.trim_end();
                if line.is_empty() {
                    continue;
                }
                batch.push(match drover_talos::kmsg::parse_line(line) {
                    Ok(r) => KernelLogLine {
                        talos_time: r.talos_time,
                        level: r.talos_level,
                        facility: r.facility,
                        message: r.msg,
                    },
                    Err(_) => KernelLogLine {
                        message: line.to_owned(),
                        ..KernelLogLine::default()
                    },
                });
                // Flush when the batch is full or nothing more is waiting.
                if batch.len() >= BATCH || reader.buffer().is_empty() {
                    flush(&drover, from, &mut batch).await;
                }
            }
        }
    }
    flush(&drover, from, &mut batch).await;
}

/// Reads one line of at most MAX_LINE bytes; a longer line is split, never buffered whole.
async fn read_line(
    reader: &mut BufReader<TunnelStream>,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    (&mut *reader)
        .take(MAX_LINE as u64)
        .read_until(b'\n', buf)
        .await
}

async fn flush(drover: &Drover, from: Ipv6Addr, batch: &mut Vec<KernelLogLine>) {
    if batch.is_empty() {
        return;
    }
    if let Err(err) = drover.append_kernel_logs(from, batch).await {
        tracing::warn!(%from, error = %err, lines = batch.len(), "kernel log lines dropped");
    }
    batch.clear();
}
