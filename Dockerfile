# cbc-monitor worker image (also runs the paging bridge: `cbc-monitor bridge alertmanager ...`).
#   docker build -t cbc-monitor:0.1.0 .
# Settings come only from MONITOR_* variables (README, "Settings"); docs/deployment.md has the rest.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/cbc-monitor
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor ./monitor
RUN /opt/cbc-monitor/bin/pip install .

FROM python:3.11.11-slim-bookworm
ENV PATH=/opt/cbc-monitor/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MONITOR_WEB_HOST=0.0.0.0 \
    MONITOR_WEB_PORT=6066 \
    MONITOR_DATA_DIR=/var/lib/cbc-monitor
# A fixed non-root uid/gid, so volume ownership and Kubernetes' runAsUser/fsGroup can match it.
RUN groupadd --system --gid 10001 monitor \
    && useradd --system --uid 10001 --gid monitor --home-dir /var/lib/cbc-monitor \
       --shell /usr/sbin/nologin monitor \
    && install -d -o monitor -g monitor -m 0750 /var/lib/cbc-monitor
COPY --from=build /opt/cbc-monitor /opt/cbc-monitor
USER 10001:10001
WORKDIR /var/lib/cbc-monitor
# RocksDB table data: keep it on a volume so a restart recovers from disk, not the changelog.
VOLUME ["/var/lib/cbc-monitor"]
EXPOSE 6066
# /readyz is 200 once the assigned partitions' table is recovered (503 during a rebalance).
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=4 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('MONITOR_WEB_PORT', '6066'), timeout=4)"]
ENTRYPOINT ["cbc-monitor"]
CMD ["worker"]
