//! Reading record files: CSV with the c360 header, or NDJSON with the same field names.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;

use c360_domain::RecordInput;

/// One row that could not be read, by line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RowError {
    pub line: u64,
    pub field: Option<String>,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Header(String),
}

/// The columns of the CSV format, in order.
pub const CSV_COLUMNS: [&str; 18] = [
    "source",
    "source_id",
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "date_of_birth",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "postal_code",
    "country",
    "loyalty_id",
    "device_id",
    "cookie_id",
    "updated_at",
];

pub enum Format {
    Csv,
    Ndjson,
}

impl Format {
    pub fn of_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("ndjson" | "jsonl" | "json") => Format::Ndjson,
            _ => Format::Csv,
        }
    }
}

/// Reads every record of a file, in order; bad rows are returned as errors with their line.
/// For small files: [`stream_file`] reads any size in constant memory.
pub fn read_file(path: &Path) -> Result<Vec<Result<RecordInput, RowError>>, InputError> {
    let mut rows = Vec::new();
    stream_file(path, |row| rows.push(row))?;
    Ok(rows)
}

/// Streams the records of a file (CSV, or NDJSON by extension `.ndjson`/`.jsonl`/`.json`) to
/// `each`, in order, one at a time.
pub fn stream_file(
    path: &Path,
    each: impl FnMut(Result<RecordInput, RowError>),
) -> Result<(), InputError> {
    let file = File::open(path).map_err(|source| InputError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let reader = BufReader::with_capacity(1 << 20, file);
    match Format::of_path(path) {
        Format::Csv => stream_csv(reader, each),
        Format::Ndjson => {
            stream_ndjson(reader, each);
            Ok(())
        }
    }
}

/// CSV with a header row naming c360's columns (any order; `source` and `source_id` required;
/// unknown columns are an error so that a misspelt column is not silently dropped).
pub fn read_csv(reader: impl Read) -> Result<Vec<Result<RecordInput, RowError>>, InputError> {
    let mut rows = Vec::new();
    stream_csv(reader, |row| rows.push(row))?;
    Ok(rows)
}

/// The CSV reader behind [`read_csv`] and [`stream_file`].
pub fn stream_csv(
    reader: impl Read,
    mut each: impl FnMut(Result<RecordInput, RowError>),
) -> Result<(), InputError> {
    stream_csv_until(reader, |_, row| {
        each(row);
        ControlFlow::Continue(())
    })
}

/// The columns of a CSV header, checked: c360's names only (a misspelt column is an error, not
/// silently dropped), `source` and `source_id` present.
fn csv_columns<R: Read>(csv: &mut csv::Reader<R>) -> Result<Vec<String>, InputError> {
    let headers = csv
        .headers()
        .map_err(|e| InputError::Header(format!("unreadable header: {e}")))?
        .clone();
    if headers.iter().all(str::is_empty) {
        return Err(InputError::Header(
            "the file is empty: no header row".to_owned(),
        ));
    }
    let columns: Vec<String> = headers
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if let Some(unknown) = columns.iter().find(|c| !CSV_COLUMNS.contains(&c.as_str())) {
        return Err(InputError::Header(format!("unknown column {unknown:?}")));
    }
    for required in ["source", "source_id"] {
        if !columns.iter().any(|c| c == required) {
            return Err(InputError::Header(format!("missing column {required:?}")));
        }
    }
    Ok(columns)
}

fn csv_reader<R: Read>(reader: R) -> csv::Reader<R> {
    // Lines end at '\n' only; the '\r' of a CRLF ending is trimmed with the other
    // surrounding whitespace. (With CRLF as terminator the reader's line numbers come out one
    // short after a CRLF header.)
    csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_reader(reader)
}

/// Checks a CSV file's header without reading its rows.
pub fn check_csv_header(reader: impl Read) -> Result<(), InputError> {
    csv_columns(&mut csv_reader(reader)).map(|_| ())
}

/// Checks that an NDJSON file has at least one non-blank line.
pub fn check_ndjson_has_rows(reader: impl BufRead) -> Result<(), InputError> {
    for line in reader.split(b'\n') {
        let line = line.map_err(|e| InputError::Header(e.to_string()))?;
        if line.iter().any(|b| !b.is_ascii_whitespace()) {
            return Ok(());
        }
    }
    Err(InputError::Header(
        "the file is empty: no records".to_owned(),
    ))
}

/// Streams CSV rows to `each` (with the line each row starts on) until it breaks.
pub fn stream_csv_until(
    reader: impl Read,
    mut each: impl FnMut(u64, Result<RecordInput, RowError>) -> ControlFlow<()>,
) -> Result<(), InputError> {
    let mut csv = csv_reader(reader);
    let columns = csv_columns(&mut csv)?;
    let mut row = csv::StringRecord::new();
    loop {
        match csv.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "the row is not valid UTF-8".to_owned(),
                    _ => e.to_string(),
                };
                let flow = each(
                    line,
                    Err(RowError {
                        line,
                        field: None,
                        reason,
                    }),
                );
                if flow.is_break() {
                    break;
                }
                continue;
            }
        }
        let line = row.position().map_or(0, |p| p.line());
        if row.len() != columns.len() {
            let flow = each(
                line,
                Err(RowError {
                    line,
                    field: None,
                    reason: format!("{} values for {} columns", row.len(), columns.len()),
                }),
            );
            if flow.is_break() {
                break;
            }
            continue;
        }
        let mut input = RecordInput::default();
        for (column, value) in columns.iter().zip(row.iter()) {
            if value.is_empty() {
                continue;
            }
            let value = Some(value.to_owned());
            match column.as_str() {
                "source" => input.source = value,
                "source_id" => input.source_id = value,
                "first_name" => input.first_name = value,
                "middle_name" => input.middle_name = value,
                "last_name" => input.last_name = value,
                "email" => input.email = value,
                "phone" => input.phone = value,
                "date_of_birth" => input.date_of_birth = value,
                "address_line1" => input.address_line1 = value,
                "address_line2" => input.address_line2 = value,
                "city" => input.city = value,
                "state" => input.state = value,
                "postal_code" => input.postal_code = value,
                "country" => input.country = value,
                "loyalty_id" => input.loyalty_id = value,
                "device_id" => input.device_id = value,
                "cookie_id" => input.cookie_id = value,
                _ => input.updated_at = value,
            }
        }
        if each(line, Ok(input)).is_break() {
            break;
        }
    }
    Ok(())
}

/// One JSON object per line; blank lines are skipped.
pub fn read_ndjson(reader: impl BufRead) -> Vec<Result<RecordInput, RowError>> {
    let mut rows = Vec::new();
    stream_ndjson(reader, |row| rows.push(row));
    rows
}

/// The NDJSON reader behind [`read_ndjson`] and [`stream_file`].
pub fn stream_ndjson(reader: impl BufRead, mut each: impl FnMut(Result<RecordInput, RowError>)) {
    stream_ndjson_until(reader, |_, row| {
        each(row);
        ControlFlow::Continue(())
    });
}

/// Streams NDJSON rows to `each` until it breaks. Lines are split on `\n` (a `\r` before it is
/// dropped); a line that is not UTF-8 is a row error, and reading goes on.
pub fn stream_ndjson_until(
    mut reader: impl BufRead,
    mut each: impl FnMut(u64, Result<RecordInput, RowError>) -> ControlFlow<()>,
) {
    let mut buffer = Vec::new();
    let mut line_no = 0u64;
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                line_no += 1;
                let _ = each(
                    line_no,
                    Err(RowError {
                        line: line_no,
                        field: None,
                        reason: e.to_string(),
                    }),
                );
                break;
            }
        }
        line_no += 1;
        let mut bytes = buffer.as_slice();
        if let Some(rest) = bytes.strip_suffix(b"\n") {
            bytes = rest.strip_suffix(b"\r").unwrap_or(rest);
        }
        if line_no == 1 {
            bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let row = match std::str::from_utf8(bytes) {
            Err(_) => Err(RowError {
                line: line_no,
                field: None,
                reason: "the line is not valid UTF-8".to_owned(),
            }),
            Ok(text) => {
                let mut de = serde_json::Deserializer::from_str(text);
                serde_path_to_error::deserialize::<_, RecordInput>(&mut de)
                    .map_err(|e| RowError {
                        line: line_no,
                        field: Some(e.path().to_string()).filter(|p| p != "."),
                        reason: e.into_inner().to_string(),
                    })
                    .and_then(|input| {
                        de.end().map(|()| input).map_err(|_| RowError {
                            line: line_no,
                            field: None,
                            reason: "text after the JSON object on the same line".to_owned(),
                        })
                    })
            }
        };
        if each(line_no, row).is_break() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_and_errors_by_line() {
        let text = "\u{feff}source,source_id,first_name,email\ncrm,1,Ann,ann@example.com\r\ncrm,2,\"Bo\nb\",\ncrm,3\nweb,4,Al,\n";
        let rows = read_csv(text.as_bytes()).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].as_ref().unwrap().first_name.as_deref(), Some("Ann"));
        assert_eq!(
            rows[1].as_ref().unwrap().first_name.as_deref(),
            Some("Bo\nb")
        );
        assert_eq!(rows[2].as_ref().unwrap_err().line, 5);
        assert!(rows[3].is_ok());
        assert!(matches!(
            read_csv("source,nope\n".as_bytes()),
            Err(InputError::Header(_))
        ));
        assert!(matches!(
            read_csv("first_name\n".as_bytes()),
            Err(InputError::Header(_))
        ));
    }

    #[test]
    fn ndjson_rows_and_errors_by_line() {
        let text = "{\"source\": \"a\", \"source_id\": \"1\"}\n\n{\"source\": 5}\nnot json\n";
        let rows = read_ndjson(text.as_bytes());
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok());
        let e = rows[1].as_ref().unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (3, Some("source")));
        assert_eq!(rows[2].as_ref().unwrap_err().line, 4);
    }

    #[test]
    fn crlf_lines() {
        let text = "\u{feff}source,source_id,email\r\ncrm,1,a\r\ncrm,2,b\r\ncrm,3\r\n";
        let mut lines = Vec::new();
        super::stream_csv_until(text.as_bytes(), |line, _| {
            lines.push(line);
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(lines, [2, 3, 4]);
    }
}
