FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY domain ./domain
COPY commands ./commands
COPY projections ./projections
COPY api ./api
RUN pip install --no-cache-dir .
RUN useradd --create-home eventshop
USER eventshop
ENV EVENTSHOP_VAR_DIR=/home/eventshop/var
EXPOSE 8000
CMD ["eventshop", "serve", "--host", "0.0.0.0", "--port", "8000"]
