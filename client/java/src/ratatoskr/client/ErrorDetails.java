package ratatoskr.client;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import com.google.rpc.RetryInfo;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import java.time.Duration;
import java.util.Map;

/**
 * What a ratd error says beyond its code and message: the ErrorInfo reason ("MODEL_NOT_FOUND",
 * ErrorReason without its prefix), domain and metadata, and the RetryInfo delay
 * ({@link Duration#ZERO} when ratd gave none), decoded from the grpc-status-details-bin trailer.
 */
public record ErrorDetails(
    Status.Code code,
    String message,
    String reason,
    String domain,
    Map<String, String> metadata,
    Duration retryDelay) {

  /** Decodes a StatusRuntimeException (or any throwable carrying a gRPC status). */
  public static ErrorDetails of(Throwable error) {
    Status status = Status.fromThrowable(error);
    String reason = "";
    String domain = "";
    Map<String, String> metadata = Map.of();
    Duration retryDelay = Duration.ZERO;
    com.google.rpc.Status rpcStatus = StatusProto.fromThrowable(error);
    if (rpcStatus != null) {
      for (Any detail : rpcStatus.getDetailsList()) {
        try {
          if (detail.is(ErrorInfo.class)) {
            ErrorInfo info = detail.unpack(ErrorInfo.class);
            reason = info.getReason();
            domain = info.getDomain();
            metadata = info.getMetadataMap();
          } else if (detail.is(RetryInfo.class)) {
            com.google.protobuf.Duration delay = detail.unpack(RetryInfo.class).getRetryDelay();
            retryDelay = Duration.ofSeconds(delay.getSeconds(), delay.getNanos());
          }
        } catch (InvalidProtocolBufferException e) {
          // A detail that does not parse is skipped; the code and message still stand.
        }
      }
    }
    return new ErrorDetails(
        status.getCode(), status.getDescription(), reason, domain, metadata, retryDelay);
  }
}
