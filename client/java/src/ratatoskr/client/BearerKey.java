package ratatoskr.client;

import io.grpc.CallCredentials;
import io.grpc.Metadata;
import io.grpc.SecurityLevel;
import io.grpc.Status;
import java.util.concurrent.Executor;

/**
 * Sends a ratd API key as "authorization: Bearer KEY" on every call. Refuses a plaintext
 * connection unless {@code allowInsecure} (loopback, unix sockets), so a key never leaves
 * the machine in the clear by accident.
 */
public final class BearerKey extends CallCredentials {
  private static final Metadata.Key<String> AUTHORIZATION =
      Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER);
  private final String key;
  private final boolean allowInsecure;

  public BearerKey(String key, boolean allowInsecure) {
    this.key = key;
    this.allowInsecure = allowInsecure;
  }

  @Override
  public void applyRequestMetadata(RequestInfo info, Executor executor, MetadataApplier applier) {
    if (!allowInsecure && info.getSecurityLevel() != SecurityLevel.PRIVACY_AND_INTEGRITY) {
      applier.fail(Status.UNAUTHENTICATED.withDescription("refusing to send an API key without TLS"));
      return;
    }
    Metadata headers = new Metadata();
    headers.put(AUTHORIZATION, "Bearer " + key);
    applier.apply(headers);
  }

  @Override
  public void thisUsesUnstableApi() {}
}
