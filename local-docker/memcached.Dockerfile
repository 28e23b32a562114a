# memcached:1.6 as the official image runs it (memcached on PATH, as user 11211), made of a local
# memcached and its libraries: local-docker/engine copies them into rootfs/.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
USER 11211:11211
EXPOSE 11211
CMD ["memcached"]
