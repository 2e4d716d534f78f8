// Command conformance checks the Go client against a running ratd: health, Chat,
// ChatStream, Embed, CountTokens and the error details. It prints one line per check and
// "N passed, N failed"; the exit status is 1 when a check failed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	ratatoskrv1 "ratatoskr/client/go/gen/ratatoskr/v1"
	"ratatoskr/client/go/ratclient"
)

type config struct {
	address, apiKey, tlsCA          string
	chatModel, embedModel, expected string
	missingModel, rateLimitedModel  string
}

func main() {
	var c config
	flag.StringVar(&c.address, "address", "127.0.0.1:9741", "ratd address")
	flag.StringVar(&c.apiKey, "api-key", "", "bearer key for ratd")
	flag.StringVar(&c.tlsCA, "tls-ca", "", "PEM CA of ratd's certificate (TLS when set)")
	flag.StringVar(&c.chatModel, "chat-model", "gpt-4o-mini", "model for Chat/ChatStream/CountTokens")
	flag.StringVar(&c.embedModel, "embed-model", "all-MiniLM-L6-v2", "local embedding model")
	flag.StringVar(&c.expected, "expect-text", "", "the answer Chat must return (any non-empty when unset)")
	flag.StringVar(&c.missingModel, "missing-model", "local:no-such-model", "an embedding model ratd does not have")
	flag.StringVar(&c.rateLimitedModel, "rate-limited-model", "", "a chat model that answers RESOURCE_EXHAUSTED with RetryInfo")
	flag.Parse()
	os.Exit(run(c))
}

func run(c config) int {
	// docs:begin
	conn, client, err := ratclient.Dial(c.address, ratclient.Options{APIKey: c.apiKey, TLSCAFile: c.tlsCA})
	// docs:end
	if err != nil {
		fmt.Println("FAIL dial:", err)
		fmt.Println("0 passed, 1 failed")
		return 1
	}
	defer conn.Close()
	checks := []struct {
		name string
		fn   func(context.Context) (string, error)
	}{
		{"health", func(ctx context.Context) (string, error) { return checkHealth(ctx, healthpb.NewHealthClient(conn)) }},
		{"chat", func(ctx context.Context) (string, error) { return checkChat(ctx, client, c) }},
		{"chat_stream", func(ctx context.Context) (string, error) { return checkChatStream(ctx, client, c) }},
		{"embed", func(ctx context.Context) (string, error) { return checkEmbed(ctx, client, c) }},
		{"count_tokens", func(ctx context.Context) (string, error) { return checkCountTokens(ctx, client, c) }},
		{"error_details", func(ctx context.Context) (string, error) { return checkNotFound(ctx, client, c) }},
	}
	if c.rateLimitedModel != "" {
		checks = append(checks, struct {
			name string
			fn   func(context.Context) (string, error)
		}{"retry_info", func(ctx context.Context) (string, error) { return checkRetryInfo(ctx, client, c) }})
	}
	passed, failed := 0, 0
	for _, check := range checks {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		note, err := check.fn(ctx)
		cancel()
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", check.name, err)
		} else {
			passed++
			fmt.Printf("ok   %s: %s\n", check.name, note)
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return 1
	}
	return 0
}

func checkHealth(ctx context.Context, health healthpb.HealthClient) (string, error) {
	reply, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return "", err
	}
	if reply.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return "", fmt.Errorf("status %v, want SERVING", reply.GetStatus())
	}
	return "SERVING", nil
}

func userMessage(text string) []*ratatoskrv1.Message {
	return []*ratatoskrv1.Message{{Role: ratatoskrv1.Role_ROLE_USER, Content: text}}
}

func checkChat(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	// docs:begin
	reply, err := client.Chat(ctx, &ratatoskrv1.ChatRequest{
		Messages: userMessage("Who carries the gossip?"),
		Options:  &ratatoskrv1.ChatOptions{Model: c.chatModel},
	})
	// docs:end
	if err != nil {
		return "", err
	}
	if err := expectText(reply.GetContent(), c.expected); err != nil {
		return "", err
	}
	if reply.GetUsage().GetTotalTokens() == 0 {
		return "", fmt.Errorf("no usage in %v", reply)
	}
	return fmt.Sprintf("%d chars from %s, %d tokens", len(reply.GetContent()), reply.GetProvider(), reply.GetUsage().GetTotalTokens()), nil
}

func checkChatStream(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	stream, err := client.ChatStream(ctx, &ratatoskrv1.ChatStreamRequest{
		Messages: userMessage("Who carries the gossip?"),
		Options:  &ratatoskrv1.ChatOptions{Model: c.chatModel},
	})
	if err != nil {
		return "", err
	}
	var content strings.Builder
	events, usage := 0, uint32(0)
	// docs:begin
	for {
		event, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		events++
		switch e := event.GetEvent().(type) {
		case *ratatoskrv1.ChatStreamResponse_Content:
			content.WriteString(e.Content)
		case *ratatoskrv1.ChatStreamResponse_Usage:
			usage = e.Usage.GetTotalTokens()
		}
	}
	// docs:end
	if err := expectText(content.String(), c.expected); err != nil {
		return "", err
	}
	if events < 2 || usage == 0 {
		return "", fmt.Errorf("%d events, usage %d: want several events and a usage event", events, usage)
	}
	return fmt.Sprintf("%d events, %d chars, usage %d tokens", events, content.Len(), usage), nil
}

func checkEmbed(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	reply, err := client.Embed(ctx, &ratatoskrv1.EmbedRequest{Text: "A squirrel runs up the ash tree.", Model: c.embedModel})
	if err != nil {
		return "", err
	}
	norm := 0.0
	for _, v := range reply.GetValues() {
		norm += float64(v) * float64(v)
	}
	norm = math.Sqrt(norm)
	if reply.GetDimensions() == 0 || int(reply.GetDimensions()) != len(reply.GetValues()) || math.Abs(norm-1) > 1e-3 {
		return "", fmt.Errorf("dimensions %d, %d values, norm %.4f", reply.GetDimensions(), len(reply.GetValues()), norm)
	}
	return fmt.Sprintf("%d dimensions, norm %.4f", reply.GetDimensions(), norm), nil
}

func checkCountTokens(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	reply, err := client.CountTokens(ctx, &ratatoskrv1.CountTokensRequest{Text: "Ratatoskr runs up and down Yggdrasil.", Model: c.chatModel})
	if err != nil {
		return "", err
	}
	if reply.GetCount() == 0 {
		return "", fmt.Errorf("count 0")
	}
	return fmt.Sprintf("%d tokens (%s)", reply.GetCount(), reply.GetTokenizer()), nil
}

func checkNotFound(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	// docs:begin
	_, err := client.Embed(ctx, &ratatoskrv1.EmbedRequest{Text: "hello", Model: c.missingModel})
	d, ok := ratclient.ErrorDetails(err)
	// docs:end
	if !ok {
		return "", fmt.Errorf("want a NOT_FOUND status, got %v", err)
	}
	if d.Code != codes.NotFound || d.Reason != "MODEL_NOT_FOUND" || d.Domain != "ratatoskr" {
		return "", fmt.Errorf("got %v reason %q domain %q: %s", d.Code, d.Reason, d.Domain, d.Message)
	}
	return fmt.Sprintf("%v, reason %s", d.Code, d.Reason), nil
}

func checkRetryInfo(ctx context.Context, client ratatoskrv1.RatatoskrClient, c config) (string, error) {
	_, err := client.Chat(ctx, &ratatoskrv1.ChatRequest{
		Messages: userMessage("hi"),
		Options:  &ratatoskrv1.ChatOptions{Model: c.rateLimitedModel},
	})
	d, ok := ratclient.ErrorDetails(err)
	if !ok || d.Code != codes.ResourceExhausted || d.RetryDelay <= 0 {
		return "", fmt.Errorf("want RESOURCE_EXHAUSTED with a retry delay, got %v (%+v)", err, d)
	}
	return fmt.Sprintf("%v, reason %s, retry after %v", d.Code, d.Reason, d.RetryDelay), nil
}

func expectText(got, want string) error {
	if got == "" || (want != "" && got != want) {
		return fmt.Errorf("content %q, want %q", got, want)
	}
	return nil
}
