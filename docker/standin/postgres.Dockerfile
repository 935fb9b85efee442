# Stand-in for the official postgres:$PG_MAJOR image (Debian flavour), for machines that
# cannot pull it. Built by scripts/images.sh, tagged oauth_jwt-standin/postgres:$PG_MAJOR.
#
# It honours the part of the official image's contract that docker/Dockerfile,
# docker/compose.yaml and docker/initdb rely on:
#   - PostgreSQL from Debian's packages, binaries in /usr/lib/postgresql/$PG_MAJOR/bin (on
#     PATH), pg_config there, the Unix socket in /var/run/postgresql; PG_MAJOR set;
#   - user postgres (uid/gid 999), PGDATA=/var/lib/postgresql/$PG_MAJOR/docker and
#     VOLUME /var/lib/postgresql (the layout of postgres:18 and later);
#   - docker-entrypoint.sh (postgres-entrypoint.sh here): POSTGRES_PASSWORD (or
#     POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS,
#     /docker-entrypoint-initdb.d/*.sh|*.sql on an empty data directory, then the server as
#     postgres; listen_addresses='*'; STOPSIGNAL SIGINT; port 5432.
# What it does not do (the official image does): *.sql.gz/xz/zst init files,
# POSTGRES_INITDB_WALDIR, Docker secrets (*_FILE variables), locales beyond C.UTF-8, gosu
# (setpriv from util-linux drops privileges here), the PGDG apt repository (packages come
# from Debian sid; PostgreSQL 19 from Debian experimental).
ARG BASE=oauth_jwt-standin/debian:sid
FROM ${BASE}

ARG PG_MAJOR=18
ENV PG_MAJOR=${PG_MAJOR}

RUN set -eux; \
	groupadd -r -g 999 postgres; \
	useradd -r -g postgres -u 999 -d /var/lib/postgresql -s /bin/bash postgres; \
	mkdir -p /var/lib/postgresql; chown postgres:postgres /var/lib/postgresql

# postgresql-common must not create a "main" cluster (the entrypoint runs initdb).
# PostgreSQL 19 is in Debian experimental only: that suite, preferred for PostgreSQL's
# packages (and libpq, which libpq-oauth pins to its own version).
RUN set -eux; \
	mkdir -p /etc/postgresql-common/createcluster.d; \
	echo 'create_main_cluster = false' > /etc/postgresql-common/createcluster.d/oauth_jwt-standin.conf; \
	if [ "$PG_MAJOR" -ge 19 ]; then \
		sed -n 's/^deb \(\S*\) sid main$/deb \1 experimental main/p' /etc/apt/sources.list > /etc/apt/sources.list.d/experimental.list; \
		test -s /etc/apt/sources.list.d/experimental.list; \
		printf 'Package: postgresql* libpq* libecpg* libpgtypes*\nPin: release a=experimental\nPin-Priority: 990\n' > /etc/apt/preferences.d/postgresql-experimental; \
	fi; \
	apt-get update; \
	apt-get install -y --no-install-recommends "postgresql-$PG_MAJOR" libpq-oauth; \
	rm -rf /var/lib/apt/lists/*; \
	test -x "/usr/lib/postgresql/$PG_MAJOR/bin/postgres"; \
	sed -ri "s!^#?(listen_addresses)\s*=\s*\S+.*!\1 = '*'!" "/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"; \
	grep -F "listen_addresses = '*'" "/usr/share/postgresql/$PG_MAJOR/postgresql.conf.sample"; \
	mkdir -p /var/run/postgresql /docker-entrypoint-initdb.d; \
	chown postgres:postgres /var/run/postgresql; chmod 3777 /var/run/postgresql

ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:$PATH \
	PGDATA=/var/lib/postgresql/${PG_MAJOR}/docker
VOLUME /var/lib/postgresql

COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh

ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
