#!/bin/sh
# Build the Java conformance program with plain javac against Debian's jars (no Maven
# repository needed): ./build.sh GEN_DIR OUT_DIR. GEN_DIR holds what `make stubs` writes
# to client/java/gen (protobuf-java output only runs on the runtime of its protoc's
# version, so it is generated at build time). Writes the jars to run with to
# OUT_DIR/classpath.txt; the classes land in OUT_DIR/classes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
gen=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
jars="grpc-api grpc-core grpc-context grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
protobuf guava perfmark-api gson geronimo-annotation-1.3-spec
netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common
netty-handler netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common"
cp=""
for jar in $jars; do
  test -f "/usr/share/java/$jar.jar" || { echo "missing /usr/share/java/$jar.jar" >&2; exit 1; }
  cp="$cp${cp:+:}/usr/share/java/$jar.jar"
done
rm -rf "$out/classes"
mkdir -p "$out/classes"
find "$gen" "$here/src" -name '*.java' > "$out/sources.txt"
javac -nowarn -encoding UTF-8 -d "$out/classes" -cp "$cp" @"$out/sources.txt" 2>&1 \
  | grep -v '^Note: ' >&2 || true
test -f "$out/classes/ratatoskr/client/Conformance.class"
echo "$cp" > "$out/classpath.txt"
