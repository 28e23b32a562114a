# redis:7 as the official image runs it (redis-server on PATH, /data the working dir), made of a
# local redis-server and its libraries: local-docker/engine copies them into rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
WORKDIR /data
EXPOSE 6379
CMD ["redis-server"]
