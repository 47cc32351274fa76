//! Bulk uploads and their jobs (`/v1/bulk`, `/v1/jobs`), and the exports (`/v1/exports/...`).

use std::path::Path as FsPath;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use c360_domain::{ExportedCustomer, FieldError, JobRowError, JobView};
use c360_services::jobs::UploadFormat;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::extract::QueryParams;
use crate::problem::{ApiError, Problem};

/// The multipart form of a bulk upload, as Swagger UI shows it (a file picker).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct BulkUploadForm {
    /// A CSV file with the c360 header, or an NDJSON file (`.ndjson`/`.jsonl`).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file of records: CSV with the c360 header (`text/csv`), NDJSON
/// (`application/x-ndjson`), or either as the `file` field of a `multipart/form-data` form.
///
/// The body is streamed to disk (files of several GB work), checked (CSV header, not empty),
/// and answered `202` with the job; the job then works through the rows in the background.
/// Rows with invalid values are rejected one by one (`/v1/jobs/{id}/errors`); every other row
/// is stored.
#[utoipa::path(
    post,
    path = "/v1/bulk",
    tag = "bulk",
    request_body(
        description = "The records file",
        content(
            (BulkUploadForm = "multipart/form-data"),
            (String = "text/csv", example = "source,source_id,first_name,last_name,email\ncrm,C-1,Ann,Lee,ann@example.com\n"),
            (String = "application/x-ndjson", example = "{\"source\":\"crm\",\"source_id\":\"C-1\",\"first_name\":\"Ann\"}\n"),
        )
    ),
    responses(
        (status = 202, description = "Job created; follow it at the Location", body = JobView,
            headers(("location" = String, description = "/v1/jobs/{job_id}"))),
        (status = 400, description = "Malformed multipart body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than C360_MAX_UPLOAD_BYTES", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not CSV, NDJSON or multipart", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "File-level problem: empty file, unknown or missing CSV columns", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (id, spool) = state.jobs.new_upload();
    let max = state.max_upload_bytes;
    let received = if media
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::BadRequest(FieldError::new("body", e.body_text()).into()))?;
        spool_multipart(multipart, &spool, max).await
    } else {
        let format = UploadFormat::from_media_type(&media).ok_or_else(|| {
            ApiError::UnsupportedMediaType(
                "send text/csv, application/x-ndjson, or multipart/form-data with a `file` field"
                    .into(),
            )
        })?;
        let stream = request.into_body().into_data_stream();
        spool_stream(stream, &spool, max)
            .await
            .map(|()| (format, None))
    };
    let (format, file_name) = match received {
        Ok(done) => done,
        Err(error) => {
            let _ = tokio::fs::remove_file(&spool).await;
            return Err(error);
        }
    };
    let job = state.jobs.submit(&id, &spool, format, file_name).await?;
    let location = HeaderValue::from_str(&format!("/v1/jobs/{}", job.job_id))
        .map_err(|_| ApiError::Internal)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(job),
    )
        .into_response())
}

/// Writes a byte stream to `path`, refusing more than `max` bytes.
async fn spool_stream<S, E>(mut stream: S, path: &FsPath, max: u64) -> Result<(), ApiError>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| spool_failed(&e))?;
    let mut file = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::BadRequest(FieldError::new("body", format!("upload interrupted: {e}")).into())
        })?;
        written += chunk.len() as u64;
        if written > max {
            return Err(ApiError::PayloadTooLarge);
        }
        file.write_all(&chunk).await.map_err(|e| spool_failed(&e))?;
    }
    file.flush().await.map_err(|e| spool_failed(&e))?;
    Ok(())
}

/// Spools the first file field of a multipart form; its format from the part's content type or
/// its file name.
async fn spool_multipart(
    mut multipart: Multipart,
    path: &FsPath,
    max: u64,
) -> Result<(UploadFormat, Option<String>), ApiError> {
    let bad = |reason: String| ApiError::BadRequest(FieldError::new("file", reason).into());
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.body_text()))?
    {
        let file_name = field.file_name().map(str::to_owned);
        if field.name() != Some("file") && file_name.is_none() {
            continue;
        }
        let format = field
            .content_type()
            .and_then(UploadFormat::from_media_type)
            .or_else(|| file_name.as_deref().and_then(UploadFormat::from_file_name))
            .ok_or_else(|| {
                ApiError::UnsupportedMediaType(
                    "the file must be CSV (.csv, text/csv) or NDJSON (.ndjson/.jsonl, application/x-ndjson)"
                        .into(),
                )
            })?;
        let stream = field.map(|chunk| chunk.map_err(|e| e.body_text()));
        spool_stream(Box::pin(stream), path, max).await?;
        return Ok((format, file_name));
    }
    Err(ApiError::invalid_field(
        "file",
        "no file in the form: send it as the `file` field",
    ))
}

fn spool_failed(error: &std::io::Error) -> ApiError {
    tracing::error!(%error, "cannot spool an upload");
    ApiError::Unavailable("cannot store the upload on disk".into())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    /// At most this many jobs (1-1000, default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

fn limit(value: Option<i64>, default: i64) -> Result<i64, ApiError> {
    match value.unwrap_or(default) {
        n @ 1..=1000 => Ok(n),
        _ => Err(ApiError::BadRequest(
            FieldError::new("limit", "between 1 and 1000").into(),
        )),
    }
}

/// Recent bulk jobs, newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "bulk",
    params(JobListQuery),
    responses(
        (status = 200, description = "Jobs, newest first", body = JobList),
        (status = 400, description = "Bad limit or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    QueryParams(query): QueryParams<JobListQuery>,
) -> Result<Json<JobList>, ApiError> {
    let jobs = state.jobs.list(limit(query.limit, 50)?).await?;
    Ok(Json(JobList { jobs }))
}

/// A bulk job: state, rows read, accepted, rejected, customers created and merged, rate, ETA.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}",
    tag = "bulk",
    params(("job_id" = String, Path, description = "Job id")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(state.jobs.get(&id).await?))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobErrorsQuery {
    /// Only rows after this line (for paging: the last line of the previous page).
    pub after_line: Option<u64>,
    /// At most this many rows (1-1000, default 100).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobErrors {
    pub job_id: String,
    pub errors: Vec<JobRowError>,
}

/// The rejected rows of a job, by line, with the field and the reason.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}/errors",
    tag = "bulk",
    params(("job_id" = String, Path, description = "Job id"), JobErrorsQuery),
    responses(
        (status = 200, description = "Rejected rows in line order", body = JobErrors),
        (status = 400, description = "Bad limit or unknown parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn job_errors(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<JobErrorsQuery>,
) -> Result<Json<JobErrors>, ApiError> {
    let errors = state
        .jobs
        .errors(&id, query.after_line.unwrap_or(0), limit(query.limit, 100)?)
        .await?;
    Ok(Json(JobErrors { job_id: id, errors }))
}

/// The exports take no parameters; an unknown one (a typo) is refused rather than ignored.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {}

/// Rows per query while streaming an export.
const EXPORT_PAGE: i64 = 5000;

/// Every record's customer, as CSV `source,source_id,customer_id`, streamed.
#[utoipa::path(
    get,
    path = "/v1/exports/assignments",
    tag = "bulk",
    params(ExportQuery),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn export_assignments(
    State(state): State<AppState>,
    QueryParams(_query): QueryParams<ExportQuery>,
) -> Response {
    let resolver = state.resolver.clone();
    let header = Bytes::from_static(b"source,source_id,customer_id\n");
    let pages = futures_util::stream::unfold(Some(None), move |cursor| {
        let resolver = resolver.clone();
        async move {
            let after: Option<(String, String)> = cursor?;
            match resolver
                .assignments_after(after.as_ref(), EXPORT_PAGE)
                .await
            {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut out = csv::Writer::from_writer(Vec::with_capacity(rows.len() * 64));
                    for row in &rows {
                        let _ = out.write_record([&row.source, &row.source_id, &row.customer_id]);
                    }
                    let bytes = out.into_inner().unwrap_or_default();
                    let last = rows.last().map(|r| (r.source.clone(), r.source_id.clone()));
                    let next = (rows.len() as i64 == EXPORT_PAGE).then_some(last);
                    Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "assignments export stopped");
                    Some((Err(std::io::Error::other("export failed")), None))
                }
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok(header) }).chain(pages);
    streamed(
        "text/csv; charset=utf-8",
        "assignments.csv",
        Body::from_stream(body),
    )
}

/// Every manual link in force, as CSV `kind,a_source,a_source_id,b_source,b_source_id,id`:
/// the decisions people made, for `c360 resolve --links` to honor in a batch run.
#[utoipa::path(
    get,
    path = "/v1/exports/manual-links",
    tag = "bulk",
    params(ExportQuery),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn export_manual_links(
    State(state): State<AppState>,
    QueryParams(_query): QueryParams<ExportQuery>,
) -> Result<Response, ApiError> {
    let links = state.resolver.active_manual_links().await?;
    let mut out = csv::Writer::from_writer(Vec::with_capacity(64 * (links.len() + 1)));
    let header = [
        "kind",
        "a_source",
        "a_source_id",
        "b_source",
        "b_source_id",
        "id",
    ];
    let write = |out: &mut csv::Writer<Vec<u8>>| -> Result<(), csv::Error> {
        out.write_record(header)?;
        for link in &links {
            out.write_record([
                link.kind.as_str(),
                link.a.source.as_str(),
                link.a.source_id.as_str(),
                link.b.source.as_str(),
                link.b.source_id.as_str(),
                link.id.as_str(),
            ])?;
        }
        Ok(())
    };
    // Writing CSV into memory fails only on a bug; logged, the client gets a 500.
    let failed = |e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "manual links export failed");
        ApiError::Internal
    };
    write(&mut out).map_err(|e| failed(&e))?;
    let bytes = out.into_inner().map_err(|e| failed(&e))?;
    Ok(streamed(
        "text/csv; charset=utf-8",
        "manual-links.csv",
        Body::from(bytes),
    ))
}

/// Every current customer's golden record with its enrichment, as NDJSON, streamed.
#[utoipa::path(
    get,
    path = "/v1/exports/customers",
    tag = "bulk",
    params(ExportQuery),
    responses(
        (status = 200, description = "One ExportedCustomer JSON object per line", content_type = "application/x-ndjson", body = ExportedCustomer),
        (status = 400, description = "Unknown query parameter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or unknown API key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ())
)]
pub async fn export_customers(
    State(state): State<AppState>,
    QueryParams(_query): QueryParams<ExportQuery>,
) -> Response {
    let resolver = state.resolver.clone();
    let pages = futures_util::stream::unfold(Some(None), move |cursor| {
        let resolver = resolver.clone();
        async move {
            let after: Option<String> = cursor?;
            match resolver
                .customers_after(after.as_deref(), EXPORT_PAGE / 5)
                .await
            {
                Ok(rows) if rows.is_empty() => None,
                Ok(rows) => {
                    let mut out = Vec::with_capacity(rows.len() * 512);
                    for row in &rows {
                        if serde_json::to_writer(&mut out, row).is_ok() {
                            out.push(b'\n');
                        }
                    }
                    let last = rows.last().map(|r| r.customer_id.as_str().to_owned());
                    let next = (rows.len() as i64 == EXPORT_PAGE / 5).then_some(last);
                    Some((Ok::<_, std::io::Error>(Bytes::from(out)), next))
                }
                Err(e) => {
                    tracing::error!(error = %e, "customers export stopped");
                    Some((Err(std::io::Error::other("export failed")), None))
                }
            }
        }
    });
    streamed(
        "application/x-ndjson",
        "customers.ndjson",
        Body::from_stream(pages),
    )
}

fn streamed(media: &'static str, file_name: &str, body: Body) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(media)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}
