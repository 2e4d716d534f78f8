package ratatoskr.client;

import com.ratatoskr.v1.RatatoskrGrpc;
import io.grpc.ChannelCredentials;
import io.grpc.CompositeChannelCredentials;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.TlsChannelCredentials;
import java.io.File;
import java.io.IOException;

/** Connections to ratd: plaintext on loopback, TLS with a CA file, a bearer key on either. */
public final class Ratd {
  private Ratd() {}

  /**
   * A channel to ratd at {@code address} (host:port). {@code apiKey} and {@code tlsCaFile} may
   * be null. Shut the channel down when done.
   */
  public static ManagedChannel connect(String address, String apiKey, String tlsCaFile)
      throws IOException {
    ChannelCredentials credentials =
        tlsCaFile == null
            ? InsecureChannelCredentials.create()
            : TlsChannelCredentials.newBuilder().trustManager(new File(tlsCaFile)).build();
    if (apiKey != null) {
      credentials =
          CompositeChannelCredentials.create(credentials, new BearerKey(apiKey, tlsCaFile == null));
    }
    return Grpc.newChannelBuilder(address, credentials).build();
  }

  /** A blocking stub of the Ratatoskr service on {@code channel}. */
  public static RatatoskrGrpc.RatatoskrBlockingStub blockingStub(ManagedChannel channel) {
    return RatatoskrGrpc.newBlockingStub(channel);
  }
}
