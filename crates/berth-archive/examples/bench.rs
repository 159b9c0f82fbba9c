//! Throughput of the hot paths on generated data: `cargo run --release -p berth-archive
//! --example bench [dir]`. Prints MB/s for gzip and zstd decompression through the tar
//! reader, and entries/s for applying 20k small files into `dir` (default: a temp dir).

use std::io::{Read, Write};
use std::time::Instant;

use berth_archive::{apply_layer, decompress, ApplyOptions, Header, TarReader, TarWriter};

fn layer(files: usize, size: usize) -> Vec<u8> {
    let mut w = TarWriter::new(Vec::new());
    let mut seed = 7u64;
    for i in 0..files {
        let data: Vec<u8> = (0..size)
            .map(|j| {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                // Text-like: compressible but not trivially.
                b"abcdefghijklmnopqrstuvwxyz \n"[((seed >> 33) as usize + j / 7) % 28]
            })
            .collect();
        let h = Header {
            name: format!("d{}/f{i}", i % 100).into_bytes(),
            size: size as u64,
            mode: 0o644,
            ..Header::default()
        };
        w.append(&h, &mut &data[..]).expect("append to vec");
    }
    w.finish().expect("finish to vec")
}

fn read_through(blob: &[u8]) -> u64 {
    let mut r = TarReader::new(decompress(blob, u64::MAX).expect("sniff"));
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 20];
    while let Some(mut e) = r.next_entry().expect("entry") {
        loop {
            let k = e.read(&mut buf).expect("read");
            if k == 0 {
                break;
            }
            n += k as u64;
        }
    }
    n
}

fn main() {
    let tar = layer(200, 512 * 1024);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let zst = zstd::encode_all(&tar[..], 3).expect("zstd");
    for (name, blob) in [("gzip", &gz), ("zstd", &zst), ("plain", &tar)] {
        let t = Instant::now();
        let n = read_through(blob);
        let s = t.elapsed().as_secs_f64();
        println!("{name:5}: {:.0} MB/s ({} MB)", n as f64 / s / 1e6, n >> 20);
    }
    let small = layer(20_000, 200);
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("berth-archive-bench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).expect("bench dir");
    let t = Instant::now();
    let stats = apply_layer(&dir, &small[..], &ApplyOptions::default()).expect("apply");
    let s = t.elapsed().as_secs_f64();
    println!(
        "apply: {:.0} entries/s ({} entries)",
        stats.entries as f64 / s,
        stats.entries
    );
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
