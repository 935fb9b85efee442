# Stand-in for the official golang:1.26-bookworm image, for machines that cannot pull it.
# Built by scripts/images.sh, tagged oauth_jwt-standin/golang:$GO_VERSION.
#
# docker/Dockerfile takes only /usr/local/go from the Go image: that is the contract here.
# The toolchain is the golang.org/toolchain module of the Go module proxy (the same files
# go.dev/dl serves), fetched and checked against the checksum database by Debian's go
# command (GOTOOLCHAIN), which is removed again. GOPROXY and GOSUMDB come from the machine
# that builds it (scripts/images.sh passes them).
# Differences from the official image: Debian sid, not bookworm; no gcc/git/make layer
# (the oauth_jwt builder stage installs gcc itself); GOPATH /go is empty.
ARG BASE=oauth_jwt-standin/debian:sid
FROM ${BASE}

ARG GO_VERSION=1.26.8
ARG GOPROXY=https://proxy.golang.org,direct
ARG GOSUMDB=sum.golang.org

RUN set -eux; \
	apt-get update; \
	apt-get install -y --no-install-recommends golang-go; \
	export GOTOOLCHAIN="go$GO_VERSION" GOPROXY GOSUMDB GOPATH=/tmp/gopath GOCACHE=/tmp/gocache; \
	goroot="$(go env GOROOT)"; \
	case "$goroot" in /tmp/gopath/pkg/mod/golang.org/toolchain@*) ;; *) echo "no toolchain module: $goroot"; exit 1;; esac; \
	cp -a "$goroot" /usr/local/go; \
	chmod -R u+w /usr/local/go; \
	apt-get purge -y --auto-remove golang-go; \
	rm -rf /var/lib/apt/lists/* /tmp/gopath /tmp/gocache; \
	GOTOOLCHAIN=local /usr/local/go/bin/go version | grep -F "go$GO_VERSION "

ENV GOLANG_VERSION=${GO_VERSION} \
	GOTOOLCHAIN=local \
	GOPATH=/go \
	PATH=/go/bin:/usr/local/go/bin:$PATH
WORKDIR /go
