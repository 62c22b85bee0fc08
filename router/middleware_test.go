package router

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/incident-engine/engine/handlers"
)

const (
	testTopic      = "test.in"
	testDeadLetter = "test.deadletter"
	testHandler    = "stage"
	testMaxRetries = 2
	// waitLimit bounds every wait; the tests finish far sooner.
	waitLimit = 10 * time.Second
)

// countingPublisher records, synchronously, every message published through it, so a test can
// assert that nothing was dead-lettered without waiting for something not to happen.
type countingPublisher struct {
	message.Publisher

	mu   sync.Mutex
	uuid []string
}

func (p *countingPublisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.Lock()
	for _, m := range msgs {
		p.uuid = append(p.uuid, m.UUID)
	}
	p.mu.Unlock()
	return p.Publisher.Publish(topic, msgs...)
}

func (p *countingPublisher) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.uuid...)
}

// calls counts a handler's attempts per message and remembers whether any attempt started
// with its context already done.
type calls struct {
	mu      sync.Mutex
	n       map[string]int
	deadCtx []string
}

func newCalls() *calls { return &calls{n: map[string]int{}} }

func (c *calls) record(msg *message.Message) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[msg.UUID]++
	if err := msg.Context().Err(); err != nil {
		c.deadCtx = append(c.deadCtx, fmt.Sprintf("%s attempt %d: %v", msg.UUID, c.n[msg.UUID], err))
	}
	return c.n[msg.UUID]
}

func (c *calls) of(uuid string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[uuid]
}

func (c *calls) deadContexts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.deadCtx...)
}

// harness is a running message.Router with the production middleware and one handler,
// connected by a gochannel Pub/Sub. Publishing blocks until the message is acked, and one
// Publish per topic runs at a time: like a Kafka partition, a message that is nacked forever
// holds up every later one.
type harness struct {
	pubSub     *gochannel.GoChannel
	deadLetter *countingPublisher
	dead       chan *message.Message // dead-lettered messages, acked
	router     *message.Router
}

func startRouter(t *testing.T, cfg Config, h message.NoPublishHandlerFunc) *harness {
	t.Helper()
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{Persistent: true, BlockPublishUntilSubscriberAck: true}, logger)
	hs := &harness{pubSub: ps, deadLetter: &countingPublisher{Publisher: ps}, dead: make(chan *message.Message, 64)}

	ctx, cancel := context.WithCancel(context.Background())
	deadCh, err := ps.Subscribe(ctx, cfg.Topics.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for m := range deadCh {
			m.Ack()
			hs.dead <- m
		}
	}()

	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitLimit}, logger)
	if err != nil {
		t.Fatal(err)
	}
	mw, err := Middleware(cfg, hs.deadLetter, logger)
	if err != nil {
		t.Fatal(err)
	}
	r.AddMiddleware(mw...)
	r.AddConsumerHandler(testHandler, testTopic, ps, h)
	hs.router = r

	ran := make(chan error, 1)
	go func() { ran <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-ran:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(waitLimit):
		t.Fatal("router did not start")
	}
	t.Cleanup(func() {
		cancel()
		if err := r.Close(); err != nil {
			t.Errorf("close router: %v", err)
		}
		select {
		case <-ran:
		case <-time.After(waitLimit):
			t.Error("router did not stop")
		}
		_ = ps.Close()
	})
	return hs
}

func testConfig() Config {
	return Config{
		Topics:         Topics{DeadLetter: testDeadLetter},
		MaxRetries:     testMaxRetries,
		RetryInterval:  time.Millisecond,
		HandlerTimeout: waitLimit,
	}
}

// publish sends a message and returns once it is acked: handled, or dead-lettered.
func (hs *harness) publish(t *testing.T, payload string) *message.Message {
	t.Helper()
	m := message.NewMessage(watermill.NewUUID(), []byte(payload))
	done := make(chan error, 1)
	go func() { done <- hs.pubSub.Publish(testTopic, m) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("publish %s: %v", payload, err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("message %q was not acked within %s", payload, waitLimit)
	}
	return m
}

// nextDead returns the next dead-lettered message.
func (hs *harness) nextDead(t *testing.T) *message.Message {
	t.Helper()
	select {
	case m := <-hs.dead:
		return m
	case <-time.After(waitLimit):
		t.Fatalf("nothing reached the dead-letter topic within %s", waitLimit)
		return nil
	}
}

// TestPoisonedMessagesAreDeadLettered sends a message that fails, then a good one behind it
// on the same topic.
func TestPoisonedMessagesAreDeadLettered(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		reason    string
		fail      func() error
		wantCalls int
		wantText  string // in reason_poisoned
	}{
		{
			name: "plain error", reason: "an error of unknown kind is retried, then dead-lettered",
			fail:      func() error { return errors.New("boom: unexpected state") },
			wantCalls: 1 + testMaxRetries, wantText: "boom: unexpected state",
		},
		{
			name: "permanent error", reason: "bad input is dead-lettered at once, without retries",
			fail:      func() error { return handlers.Permanent(errors.New("service is missing")) },
			wantCalls: 1, wantText: "permanent: service is missing",
		},
		{
			name: "panic", reason: "a panicking handler is dead-lettered at once instead of looping",
			fail:      func() error { panic("nil map in handler") },
			wantCalls: 1, wantText: "nil map in handler",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newCalls()
			hs := startRouter(t, testConfig(), func(msg *message.Message) error {
				c.record(msg)
				if string(msg.Payload) == "bad" {
					return tc.fail()
				}
				return nil
			})

			bad := hs.publish(t, "bad")
			dead := hs.nextDead(t)
			if dead.UUID != bad.UUID || string(dead.Payload) != "bad" {
				t.Errorf("%s: dead-lettered %s %q, want the bad message %s", tc.reason, dead.UUID, dead.Payload, bad.UUID)
			}
			if got := dead.Metadata.Get(middleware.ReasonForPoisonedKey); !strings.Contains(got, tc.wantText) {
				t.Errorf("%s: %s = %q, want it to contain %q", tc.reason, middleware.ReasonForPoisonedKey, got, tc.wantText)
			}
			if got := dead.Metadata.Get(middleware.PoisonedTopicKey); got != testTopic {
				t.Errorf("%s = %q, want %q", middleware.PoisonedTopicKey, got, testTopic)
			}
			if got := dead.Metadata.Get(middleware.PoisonedHandlerKey); got != testHandler {
				t.Errorf("%s = %q, want %q", middleware.PoisonedHandlerKey, got, testHandler)
			}

			// The partition keeps moving: the next message is handled, once, and the poisoned
			// one was acked, not redelivered.
			good := hs.publish(t, "good")
			if got := c.of(good.UUID); got != 1 {
				t.Errorf("the message after the poisoned one was handled %d times, want 1", got)
			}
			if got := c.of(bad.UUID); got != tc.wantCalls {
				t.Errorf("%s: the handler ran %d times, want %d", tc.reason, got, tc.wantCalls)
			}
			if got := hs.deadLetter.published(); len(got) != 1 {
				t.Errorf("dead-lettered %v, want only the bad message", got)
			}
			if dc := c.deadContexts(); len(dc) > 0 {
				t.Errorf("attempts started with a context already done: %v", dc)
			}
		})
	}
}

// TestTransientErrorsAreRedelivered checks that a message failing on a dependency outage is
// retried, handed back to the broker when the retries run out, and processed once the
// dependency is back, without ever reaching the dead-letter topic.
func TestTransientErrorsAreRedelivered(t *testing.T) {
	t.Parallel()
	const outage = 2*(1+testMaxRetries) + 1 // two deliveries fail entirely, the third recovers
	c := newCalls()
	var succeeded sync.Once
	done := make(chan struct{})
	hs := startRouter(t, testConfig(), func(msg *message.Message) error {
		n := c.record(msg)
		if err := msg.Context().Err(); err != nil {
			return fmt.Errorf("begin transaction: %w", err) // as a database driver would
		}
		if n <= outage {
			return fmt.Errorf("begin transaction: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)})
		}
		succeeded.Do(func() { close(done) })
		return nil
	})

	m := hs.publish(t, "sample") // returns once acked
	select {
	case <-done:
	default:
		t.Fatal("the message was acked without being processed")
	}
	if got := c.of(m.UUID); got != outage+1 {
		t.Errorf("the handler ran %d times, want %d (%d failures, then the success)", got, outage+1, outage)
	}
	if got := hs.deadLetter.published(); len(got) != 0 {
		t.Errorf("dead-lettered %v; a transient error must not be", got)
	}
	if dc := c.deadContexts(); len(dc) > 0 {
		t.Errorf("retries started with a context already done, so a real database call would fail: %v", dc)
	}
}

// TestShutdownDoesNotDeadLetter checks that a message interrupted by the router closing is
// left for redelivery, not dead-lettered.
func TestShutdownDoesNotDeadLetter(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	var once sync.Once
	hs := startRouter(t, testConfig(), func(msg *message.Message) error {
		once.Do(func() { close(started) })
		select {
		case <-msg.Context().Done():
			return fmt.Errorf("query: %w", msg.Context().Err())
		case <-time.After(waitLimit):
			return errors.New("the message context was not cancelled on shutdown")
		}
	})
	go func() { _ = hs.pubSub.Publish(testTopic, message.NewMessage(watermill.NewUUID(), []byte("sample"))) }()
	select {
	case <-started:
	case <-time.After(waitLimit):
		t.Fatal("the handler did not start")
	}
	if err := hs.router.Close(); err != nil {
		t.Fatalf("close router: %v", err)
	}
	if got := hs.deadLetter.published(); len(got) != 0 {
		t.Errorf("dead-lettered %v on shutdown; it should be redelivered when the worker is back", got)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	_, panicErr := middleware.Recoverer(func(*message.Message) ([]*message.Message, error) { panic("boom") })(message.NewMessage("1", nil))
	connRefused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name          string
		reason        string
		err           error
		wantPermanent bool
		wantTransient bool
	}{
		{"nil", "no error is neither", nil, false, false},
		{"plain error", "unknown errors are retried, then dead-lettered", errors.New("boom"), false, false},
		{"permanent", "bad input can never succeed", handlers.Permanent(errors.New("bad sample")), true, false},
		{"wrapped permanent", "the mark survives wrapping", fmt.Errorf("stage decode: %w", handlers.Permanent(errors.New("bad"))), true, false},
		{"ErrPermanent itself", "the sentinel is permanent", handlers.ErrPermanent, true, false},
		{"permanent wins", "a handler's verdict beats the cause it wraps", handlers.Permanent(syscall.ECONNREFUSED), true, false},
		{"recovered panic", "a panic repeats on every attempt", panicErr, true, false},
		{"connection refused", "the database or broker is down", fmt.Errorf("connect: %w", syscall.ECONNREFUSED), false, true},
		{"connection reset", "the peer went away mid-request", fmt.Errorf("read: %w", syscall.ECONNRESET), false, true},
		{"net.OpError", "any network error is an outage", fmt.Errorf("dial db: %w", connRefused), false, true},
		{"deadline exceeded", "an attempt that timed out may succeed later", fmt.Errorf("query: %w", context.DeadlineExceeded), false, true},
		{"canceled", "a message interrupted by shutdown is redelivered", fmt.Errorf("query: %w", context.Canceled), false, true},
		{"kafka out of brokers", "the broker cluster is unreachable", fmt.Errorf("publish: %w", sarama.ErrOutOfBrokers), false, true},
		{"postgres serialization failure", "class 40: retry the transaction", &pgconn.PgError{Code: "40001"}, false, true},
		{"postgres deadlock", "class 40: retry the transaction", &pgconn.PgError{Code: "40P01"}, false, true},
		{"postgres connection failure", "class 08: connection exception", fmt.Errorf("save: %w", &pgconn.PgError{Code: "08006"}), false, true},
		{"postgres too many connections", "class 53: insufficient resources", &pgconn.PgError{Code: "53300"}, false, true},
		{"postgres admin shutdown", "57P01: the server is restarting", &pgconn.PgError{Code: "57P01"}, false, true},
		{"postgres unique violation", "a constraint violation will not go away by itself", &pgconn.PgError{Code: "23505"}, false, false},
		{"postgres query canceled", "57014 is not 57P: a statement timeout, not an outage", &pgconn.PgError{Code: "57014"}, false, false},
		{"postgres syntax error", "a bug in a query is no outage", &pgconn.PgError{Code: "42601"}, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := IsPermanent(tc.err); got != tc.wantPermanent {
				t.Errorf("%s: IsPermanent(%v) = %v, want %v", tc.reason, tc.err, got, tc.wantPermanent)
			}
			if got := IsTransient(tc.err); got != tc.wantTransient {
				t.Errorf("%s: IsTransient(%v) = %v, want %v", tc.reason, tc.err, got, tc.wantTransient)
			}
		})
	}
}
