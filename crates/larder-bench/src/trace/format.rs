//! The trace formats `larder bench trace` reads: one decimal key per line (every object of size
//! 1), libCacheSim's `oracleGeneral` binary records, and CSV with a key column and a size column.
//! Any of them may be zstd-compressed (`.zst`; the caller decompresses).

use std::io::{BufRead, Read};

use crate::args::TraceFormat as Format;
use crate::error::TraceError;

/// The format of a file named `name` when `format` is `Auto`: `oracleGeneral` in the name
/// means that format, `.csv` CSV, anything else one key per line.
pub(crate) fn resolve(format: Format, name: &str) -> Format {
    if format != Format::Auto {
        return format;
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

/// A trace in memory: the requested keys and, when the format has them, each request's object
/// size in bytes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Trace {
    pub(crate) keys: Vec<u64>,
    pub(crate) sizes: Option<Vec<u32>>,
}

/// CSV's key and size columns, counted from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Columns {
    pub(crate) key: usize,
    pub(crate) size: usize,
}

/// Reads a whole trace in `format` (`Auto` reads keys; [`resolve`] it first).
pub(crate) fn parse(
    reader: impl BufRead,
    format: Format,
    columns: Columns,
) -> Result<Trace, TraceError> {
    match format {
        Format::Oracle => oracle(reader),
        Format::Csv => csv(reader, columns),
        Format::Keys | Format::Auto => keys(reader),
    }
}

fn keys(reader: impl BufRead) -> Result<Trace, TraceError> {
    let mut keys = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let key = line.parse().map_err(|source| TraceError::Key {
            line: number + 1,
            text: line.to_owned(),
            source,
        })?;
        keys.push(key);
    }
    Ok(Trace { keys, sizes: None })
}

/// Bytes of one oracleGeneral record.
pub(crate) const ORACLE_RECORD: usize = 24;

fn oracle(mut reader: impl Read) -> Result<Trace, TraceError> {
    let mut keys = Vec::new();
    let mut sizes = Vec::new();
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
            0 => {
                return Ok(Trace {
                    keys,
                    sizes: Some(sizes),
                });
            }
            ORACLE_RECORD => {}
            _ => {
                return Err(TraceError::TornRecord {
                    record: keys.len() + 1,
                    filled,
                });
            }
        }
        let mut id = [0; 8];
        id.copy_from_slice(&record[4..12]);
        let mut size = [0; 4];
        size.copy_from_slice(&record[12..16]);
        keys.push(u64::from_le_bytes(id));
        sizes.push(u32::from_le_bytes(size));
    }
}

fn csv(reader: impl BufRead, columns: Columns) -> Result<Trace, TraceError> {
    let mut keys = Vec::new();
    let mut sizes = Vec::new();
    for (number, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(key), Some(size)) = (fields.get(columns.key), fields.get(columns.size)) else {
            return Err(TraceError::Columns {
                line: number + 1,
                needed: columns.key.max(columns.size) + 1,
            });
        };
        let size = match size.parse::<u32>() {
            Ok(size) => size,
            // A first line whose size is not a number is a header.
            Err(_) if number == 0 => continue,
            Err(source) => {
                return Err(TraceError::Size {
                    line: number + 1,
                    text: (*size).to_owned(),
                    source,
                });
            }
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

    const FIRST_TWO: Columns = Columns { key: 0, size: 1 };

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
            resolve(Format::Auto, "w01.oracleGeneral.bin.zst"),
            Format::Oracle
        );
        assert_eq!(resolve(Format::Auto, "cdn.csv.zst"), Format::Csv);
        assert_eq!(resolve(Format::Auto, "arc-p3.keys.zst"), Format::Keys);
        assert_eq!(resolve(Format::Csv, "x.keys"), Format::Csv);
    }

    #[test]
    fn reads_keys_and_reports_bad_lines() {
        let trace = parse("1\n22\n\n333\n".as_bytes(), Format::Keys, FIRST_TWO).unwrap();
        assert_eq!(trace.keys, [1, 22, 333]);
        assert_eq!(trace.sizes, None);
        let err = parse("1\nx\n".as_bytes(), Format::Keys, FIRST_TWO).unwrap_err();
        assert!(matches!(err, TraceError::Key { line: 2, .. }), "{err:?}");
        assert_eq!(err.to_string(), "line 2: \"x\" is not a decimal key");
    }

    #[test]
    fn reads_oracle_general_records_and_refuses_a_torn_one() {
        let bytes = [record(5, 100), record(9, 4096)].concat();
        let trace = parse(&bytes[..], Format::Oracle, FIRST_TWO).unwrap();
        assert_eq!(trace.keys, [5, 9]);
        assert_eq!(trace.sizes, Some(vec![100, 4096]));
        let torn = parse(&bytes[..30], Format::Oracle, FIRST_TWO).unwrap_err();
        assert!(
            matches!(
                torn,
                TraceError::TornRecord {
                    record: 2,
                    filled: 6
                }
            ),
            "{torn:?}"
        );
        assert!(torn.to_string().contains("record 2"), "{torn}");
    }

    #[test]
    fn reads_csv_with_a_header_and_named_keys() {
        let text = "time,key,size\n1,42,100\n2,page/a,2000\n3,42,100\n";
        let columns = Columns { key: 1, size: 2 };
        let trace = parse(text.as_bytes(), Format::Csv, columns).unwrap();
        assert_eq!(trace.keys.len(), 3);
        assert_eq!((trace.keys[0], trace.keys[2]), (42, 42));
        assert_eq!(trace.keys[1], key_hash("page/a"));
        assert_eq!(trace.sizes, Some(vec![100, 2000, 100]));
        let bad = parse("1,42,x\n2,43,y\n".as_bytes(), Format::Csv, columns).unwrap_err();
        assert!(matches!(bad, TraceError::Size { line: 2, .. }), "{bad:?}");
        assert!(bad.to_string().contains("line 2"), "{bad}");
        let narrow = parse("1,42\n".as_bytes(), Format::Csv, columns).unwrap_err();
        assert!(
            matches!(narrow, TraceError::Columns { line: 1, needed: 3 }),
            "{narrow:?}"
        );
    }
}
