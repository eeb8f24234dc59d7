FROM python:3.11.17-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# The runtime lock first, so that a change to the code alone reuses this layer.
COPY requirements/runtime.txt ./requirements/runtime.txt
RUN pip install --no-cache-dir -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY eventstore ./eventstore
COPY commands ./commands
COPY projections ./projections
COPY api ./api
COPY cli ./cli
COPY eventshop ./eventshop
# Its dependencies are all installed above, from the lock.
RUN pip install --no-cache-dir --no-deps .
RUN useradd --create-home eventshop
USER eventshop
ENV EVENTSHOP_VAR_DIR=/home/eventshop/var
EXPOSE 8000
CMD ["eventshop", "serve", "--host", "0.0.0.0", "--port", "8000"]
