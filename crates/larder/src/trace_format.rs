//! The trace formats `larder bench trace` reads: one decimal key per line (every object of size
//! 1), libCacheSim's `oracleGeneral` binary records, and CSV with a key column and a size column.
//! Any of them may be zstd-compressed (`.zst`).

use std::io::{BufRead, Read};

use anyhow::{Context, bail};

/// How a trace file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// From the file name: `oracleGeneral` in it means that format, `.csv` CSV, else keys.
    Auto,
    /// One decimal key per line; every object has size 1.
    Keys,
    /// libCacheSim's oracleGeneral: 24-byte little-endian records
    /// `[time u32][object id u64][object size u32][next access i64]`.
    Oracle,
    /// Comma-separated lines with a key column and a size column (`--csv-columns`); a first
    /// line whose size is not a number is taken for a header.
    Csv,
}

impl Format {
    /// The format of `name` when `self` is `Auto`.
    pub(crate) fn resolve(self, name: &str) -> Format {
        if self != Format::Auto {
            return self;
        }
        let name = name.trim_end_matches(".zst");
        if name.contains("oracleGeneral") {
            Format::Oracle
        } else if name.ends_with(".csv") {
            Format::Csv
        } else {
            Format::Keys
        }
    }
}

/// A trace in memory: the requested keys and, when the format has them, each request's object
/// size in bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Trace {
    pub(crate) keys: Vec<u64>,
    pub(crate) sizes: Option<Vec<u32>>,
}

/// Reads a whole trace in `format` (not `Auto`); `columns` are CSV's 1-based key and size
/// columns.
pub(crate) fn parse(
    reader: impl BufRead,
    format: Format,
    columns: (usize, usize),
) -> anyhow::Result<Trace> {
    match format {
        Format::Oracle => oracle(reader),
        Format::Csv => csv(reader, columns),
        Format::Keys | Format::Auto => keys(reader),
    }
}

fn keys(reader: impl BufRead) -> anyhow::Result<Trace> {
    let mut keys = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        keys.push(
            line.parse()
                .with_context(|| format!("line {}: {line:?} is not a decimal key", number + 1))?,
        );
    }
    Ok(Trace { keys, sizes: None })
}

/// Bytes of one oracleGeneral record.
const ORACLE_RECORD: usize = 24;

fn oracle(mut reader: impl Read) -> anyhow::Result<Trace> {
    let mut trace = Trace {
        keys: Vec::new(),
        sizes: Some(Vec::new()),
    };
    let mut record = [0u8; ORACLE_RECORD];
    loop {
        let mut filled = 0;
        while filled < ORACLE_RECORD {
            let n = reader.read(&mut record[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        match filled {
            0 => return Ok(trace),
            ORACLE_RECORD => {}
            _ => bail!(
                "record {}: the file ends {filled} bytes into a {ORACLE_RECORD}-byte oracleGeneral record",
                trace.keys.len() + 1
            ),
        }
        let mut id = [0; 8];
        id.copy_from_slice(&record[4..12]);
        let mut size = [0; 4];
        size.copy_from_slice(&record[12..16]);
        trace.keys.push(u64::from_le_bytes(id));
        if let Some(sizes) = &mut trace.sizes {
            sizes.push(u32::from_le_bytes(size));
        }
    }
}

fn csv(reader: impl BufRead, (key_col, size_col): (usize, usize)) -> anyhow::Result<Trace> {
    if key_col == 0 || size_col == 0 {
        bail!("CSV columns count from 1");
    }
    let mut keys = Vec::new();
    let mut sizes = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(key), Some(size)) = (fields.get(key_col - 1), fields.get(size_col - 1)) else {
            bail!(
                "line {}: fewer than {} columns",
                number + 1,
                key_col.max(size_col)
            );
        };
        let size = match size.parse::<u32>() {
            Ok(size) => size,
            Err(_) if number == 0 => continue,
            Err(_) => bail!(
                "line {}: size {size:?} is not a whole number of bytes",
                number + 1
            ),
        };
        keys.push(key.parse().unwrap_or_else(|_| key_hash(key)));
        sizes.push(size);
    }
    Ok(Trace {
        keys,
        sizes: Some(sizes),
    })
}

/// A key that is not a decimal number, as a stable 64-bit number (FNV-1a).
fn key_hash(key: &str) -> u64 {
    key.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, size: u32) -> Vec<u8> {
        let mut bytes = 7u32.to_le_bytes().to_vec();
        bytes.extend(id.to_le_bytes());
        bytes.extend(size.to_le_bytes());
        bytes.extend((-1i64).to_le_bytes());
        bytes
    }

    #[test]
    fn formats_follow_the_file_name() {
        assert_eq!(
            Format::Auto.resolve("w01.oracleGeneral.bin.zst"),
            Format::Oracle
        );
        assert_eq!(Format::Auto.resolve("cdn.csv.zst"), Format::Csv);
        assert_eq!(Format::Auto.resolve("arc-p3.keys.zst"), Format::Keys);
        assert_eq!(Format::Csv.resolve("x.keys"), Format::Csv);
    }

    #[test]
    fn reads_oracle_general_records_and_refuses_a_torn_one() {
        let bytes = [record(5, 100), record(9, 4096)].concat();
        let trace = parse(&bytes[..], Format::Oracle, (1, 2)).unwrap();
        assert_eq!(trace.keys, [5, 9]);
        assert_eq!(trace.sizes, Some(vec![100, 4096]));
        let torn = parse(&bytes[..30], Format::Oracle, (1, 2)).unwrap_err();
        assert!(torn.to_string().contains("record 2"), "{torn}");
    }

    #[test]
    fn reads_csv_with_a_header_and_named_keys() {
        let text = "time,key,size\n1,42,100\n2,page/a,2000\n3,42,100\n";
        let trace = parse(text.as_bytes(), Format::Csv, (2, 3)).unwrap();
        assert_eq!(trace.keys.len(), 3);
        assert_eq!((trace.keys[0], trace.keys[2]), (42, 42));
        assert_eq!(trace.keys[1], key_hash("page/a"));
        assert_eq!(trace.sizes, Some(vec![100, 2000, 100]));
        let bad = parse("1,42,x\n2,43,y\n".as_bytes(), Format::Csv, (2, 3)).unwrap_err();
        assert!(bad.to_string().contains("line 2"), "{bad}");
    }
}
