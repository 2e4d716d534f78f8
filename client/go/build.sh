#!/bin/sh
# Build the Go conformance program with Debian's Go packages in GOPATH mode (no module
# proxy needed): ./build.sh OUT_DIR. The generated code under gen/ is committed. GOCACHE,
# when set, is kept across builds (the tests keep it in .cache/clients/go-build).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
gopath="$out/gopath"
mkdir -p "$gopath/src/ratatoskr/client"
ln -sfn "$here" "$gopath/src/ratatoskr/client/go"
export GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOCACHE="${GOCACHE:-$out/gocache}" GOFLAGS=
go build -o "$out/conformance" ratatoskr/client/go/cmd/conformance
