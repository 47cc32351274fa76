# Build the c360 binary, then run it on a slim image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin c360

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /var/lib/c360 c360 \
    && mkdir -p /var/lib/c360/data && chown c360 /var/lib/c360/data
COPY --from=build /src/target/release/c360 /usr/local/bin/c360
USER c360
WORKDIR /var/lib/c360
ENV C360_BIND=0.0.0.0:8080 \
    C360_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["c360"]
CMD ["serve"]
