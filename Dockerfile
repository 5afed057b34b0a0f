# One image for the app, the feature API and the Prefect flow.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

ARG WITH_PREFECT=0
# the lake profile's image (Spark driver and workers): Java 17 and pyspark, whose spark-class
# runs the workers, so executors have Feast and StreamFlow for spark.engine's Python writes
ARG WITH_SPARK=0
RUN if [ "$WITH_SPARK" = "1" ]; then apt-get update \
      && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
      && rm -rf /var/lib/apt/lists/*; fi
COPY requirements.txt requirements-prefect.txt requirements-spark.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt \
 && if [ "$WITH_PREFECT" = "1" ]; then pip install -r requirements-prefect.txt -c constraints.txt; fi \
 && if [ "$WITH_SPARK" = "1" ]; then pip install -r requirements-spark.txt -c constraints.txt; fi
# Hadoop's s3a connector for an s3a:// lake (MinIO, S3), at build time from Maven Central: the
# hadoop-aws release equal to pyspark's bundled Hadoop client, and the AWS SDK v2 bundle that
# release was built against (tests/test_compose.py checks the first against the installed pyspark)
ARG HADOOP_AWS_VERSION=3.4.1
ARG AWS_SDK_BUNDLE_VERSION=2.24.6
RUN if [ "$WITH_SPARK" = "1" ]; then python -c "import os, sys, urllib.request, pyspark; \
jars = os.path.join(os.path.dirname(pyspark.__file__), 'jars'); m = 'https://repo1.maven.org/maven2'; \
[urllib.request.urlretrieve(f'{m}/{path}', os.path.join(jars, path.rsplit('/', 1)[1])) for path in sys.argv[1:]]" \
      org/apache/hadoop/hadoop-aws/$HADOOP_AWS_VERSION/hadoop-aws-$HADOOP_AWS_VERSION.jar \
      software/amazon/awssdk/bundle/$AWS_SDK_BUNDLE_VERSION/bundle-$AWS_SDK_BUNDLE_VERSION.jar; fi

COPY pyproject.toml README.md ./
COPY streamflow ./streamflow
COPY feature_repo ./feature_repo
COPY app ./app
COPY scripts ./scripts
COPY .streamlit ./.streamlit
RUN pip install --no-deps -e . && useradd --create-home streamflow && mkdir -p data \
 && chown -R streamflow /app
USER streamflow

# Overridden per service in docker-compose.yml; bind addresses are opened there, inside the container.
EXPOSE 8501 8000
CMD ["python", "app/serve.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
