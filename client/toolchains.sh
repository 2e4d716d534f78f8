#!/bin/sh
# Installs what each language's client needs to build and run its conformance program
# (`make clients-toolchains`, a step of `make test`): Debian packages through apt-get
# (root only), the TypeScript packages into client/typescript/node_modules (npm ci).
# Idempotent and quick when everything is there: apt-get runs only for packages that
# dpkg does not list as installed. Never fails: a language whose toolchain cannot be
# installed is reported here, and its test in tests/test_clients.py skips with the reason.
# Also redis-server, which tests/test_governance_redis.py starts (it skips without it).
# Usage: client/toolchains.sh [go] [typescript] [cpp] [java] [ruby] [redis]   (default: all)
set -u
cd "$(dirname "$0")/.."

go_pkgs="golang-go protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev golang-google-genproto-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev"
cpp_pkgs="g++ make pkg-config protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev"
java_pkgs="default-jdk-headless protobuf-compiler protobuf-compiler-grpc-java-plugin libgrpc-java libprotobuf-java libguava-java libnetty-java libperfmark-java libgoogle-gson-java libgeronimo-annotation-1.3-spec-java"
ruby_pkgs="ruby ruby-grpc ruby-google-protobuf ruby-googleapis-common-protos-types protobuf-compiler protobuf-compiler-grpc"
node_pkgs="nodejs npm"
redis_pkgs="redis-server"

missing() {
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || echo "$pkg"
  done
}

apt_updated=""
apt_install() {  # apt_install LANGUAGE PACKAGE...
  lang=$1; shift
  todo=$(missing "$@")
  [ -z "$todo" ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "clients: $lang: cannot install $(echo $todo) (needs root and apt-get)"
    return 1
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq >/dev/null 2>&1 || true
    apt_updated=1
  fi
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $todo \
    >/tmp/ratatoskr-clients-apt.log 2>&1 || {
    echo "clients: $lang: apt-get install $(echo $todo) failed:"; tail -n 5 /tmp/ratatoskr-clients-apt.log
    return 1
  }
}

setup() {  # setup LANGUAGE: install, then say how long it took
  start=$(date +%s)
  case $1 in
    go) apt_install go $go_pkgs ;;
    cpp) apt_install cpp $cpp_pkgs ;;
    java) apt_install java $java_pkgs ;;
    ruby) apt_install ruby $ruby_pkgs ;;
    redis) apt_install redis $redis_pkgs ;;
    typescript)
      command -v npm >/dev/null || apt_install typescript $node_pkgs || return 1
      lock=client/typescript/package-lock.json
      stamp=client/typescript/node_modules/.package-lock.json
      if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        (cd client/typescript && npm ci --no-audit --no-fund --loglevel=error) || {
          echo "clients: typescript: npm ci failed"; return 1; }
      fi ;;
    *) echo "clients: unknown language $1"; return 1 ;;
  esac
  status=$?
  elapsed=$(( $(date +%s) - start ))
  [ "$elapsed" -gt 1 ] && echo "clients: $1: toolchain installed in ${elapsed}s"
  return $status
}

for lang in ${*:-go typescript cpp java ruby redis}; do
  setup "$lang" || echo "clients: $lang: toolchain unavailable, its tests will skip"
done
exit 0
