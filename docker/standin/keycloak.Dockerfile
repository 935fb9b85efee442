# Stand-in for the official quay.io/keycloak/keycloak:$KEYCLOAK_VERSION image, for machines
# that cannot pull it. Built by scripts/images.sh, tagged
# oauth_jwt-standin/keycloak:$KEYCLOAK_VERSION; the build context is the Keycloak
# distribution scripts/keycloak.sh caches (org.keycloak:keycloak-quarkus-dist from Maven
# Central, the same files the official image unpacks).
#
# The contract docker/compose.yaml and docker/e2e_test.go rely on: Keycloak in /opt/keycloak,
# /opt/keycloak/bin/kc.sh as entrypoint (start-dev, --import-realm, ...), realm files read
# from /opt/keycloak/data/import, KC_BOOTSTRAP_ADMIN_USERNAME/PASSWORD, user 1000 (group 0),
# ports 8080 (http) and 9000 (management), bash for the health check.
# Differences from the official image: Debian sid and its default Java runtime instead of
# UBI 9 micro with OpenJDK 21; KC_RUN_IN_CONTAINER is set as there, but the suite and the
# compose file also pass --http-host=0.0.0.0, which the official image needs as well.
ARG BASE=oauth_jwt-standin/debian:sid
FROM ${BASE}

ARG KEYCLOAK_VERSION=26.7.3

RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends default-jre-headless; \
	rm -rf /var/lib/apt/lists/*; \
	java -version 2>&1 | head -n1; \
	useradd -u 1000 -g 0 -M -d /opt/keycloak keycloak

COPY --chown=1000:0 . /opt/keycloak
RUN set -eux; \
	grep -qF "$KEYCLOAK_VERSION" /opt/keycloak/version.txt; \
	mkdir -p /opt/keycloak/data/import; \
	chown -R 1000:0 /opt/keycloak/data

ENV KC_RUN_IN_CONTAINER=true LANG=C.UTF-8
USER 1000
WORKDIR /opt/keycloak
EXPOSE 8080 8443 9000
ENTRYPOINT ["/opt/keycloak/bin/kc.sh"]
