// Command agora-ferretdb runs FerretDB v1 (MongoDB wire protocol over SQLite or
// PostgreSQL) for Agora's local stack, and pings a running one.
//
// It embeds github.com/FerretDB/FerretDB/ferretdb instead of building FerretDB's own
// cmd/ferretdb, whose `go install` build panics at start (its build/version/version.txt is
// git-ignored upstream, FerretDB issue #2982).
//
//	agora-ferretdb serve -listen-addr 127.0.0.1:27017 -handler postgresql \
//		-postgresql-url 'postgres://postgres@127.0.0.1:54320/ferretdb?pool_max_conns=200'
//	agora-ferretdb serve -listen-addr 127.0.0.1:27017 -handler sqlite -sqlite-dir /path/to/dir
//	agora-ferretdb ping  -uri mongodb://127.0.0.1:27017/ -timeout 2s
//
// The flags map onto the embeddable ferretdb.Config: -handler onto Handler, -postgresql-url onto
// PostgreSQLURL (a pgx connection string; the database must exist), -sqlite-dir onto SQLiteURL
// ("file:<dir>/"). The default handler is sqlite, which needs no other server; Agora's local
// stack runs postgresql (deploy/local/stack.sh, AGORA_STACK_FERRETDB_BACKEND).
//
// serve runs until SIGTERM or SIGINT, then closes the listener and the backend.
// ping exits 0 once a real MongoDB driver round trip ({ping: 1}) succeeds, 1 otherwise.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"

	"github.com/FerretDB/FerretDB/ferretdb"
)

func usage() {
	fmt.Fprintf(os.Stderr, "usage:\n"+
		"  %[1]s serve [-listen-addr ADDR] [-handler sqlite|postgresql] [-sqlite-dir DIR] [-postgresql-url URL] [-log-level LEVEL]\n"+
		"  %[1]s ping [-uri URI] [-timeout DURATION]\n", filepath.Base(os.Args[0]))
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}

	var err error

	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "ping":
		err = ping(os.Args[2:])
	case "-h", "-help", "--help", "help":
		usage()
		return
	default:
		usage()
		os.Exit(2)
	}

	if err != nil {
		fmt.Fprintf(os.Stderr, "agora-ferretdb %s: %s\n", os.Args[1], err)
		os.Exit(1)
	}
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listenAddr := fs.String("listen-addr", "127.0.0.1:27017", "TCP listen address")
	handler := fs.String("handler", "sqlite", "backend handler: sqlite or postgresql")
	sqliteDir := fs.String("sqlite-dir", "", "directory for the SQLite databases (sqlite handler; created if missing)")
	postgresqlURL := fs.String("postgresql-url", "", "PostgreSQL URL (postgresql handler)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	_ = fs.Parse(args)

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("bad -log-level: %w", err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	conf := &ferretdb.Config{
		Listener: ferretdb.ListenerConfig{TCP: *listenAddr},
		Logger:   logger,
		Handler:  *handler,
	}

	var backendURL string // for the log line (password redacted)

	switch *handler {
	case "sqlite":
		if *sqliteDir == "" {
			return errors.New("-sqlite-dir is required with the sqlite handler")
		}

		dir, err := filepath.Abs(*sqliteDir)
		if err != nil {
			return err
		}

		// FerretDB wants an existing directory and a URI that ends with a slash.
		if err = os.MkdirAll(dir, 0o755); err != nil {
			return err
		}

		conf.SQLiteURL = "file:" + strings.TrimSuffix(dir, "/") + "/"
		backendURL = conf.SQLiteURL
	case "postgresql":
		if *postgresqlURL == "" {
			return errors.New("-postgresql-url is required with the postgresql handler")
		}

		u, err := url.Parse(*postgresqlURL)
		if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			return fmt.Errorf("-postgresql-url must be a postgres:// URL, got %q", *postgresqlURL)
		}

		conf.PostgreSQLURL = *postgresqlURL
		backendURL = u.Redacted()
	default:
		return fmt.Errorf("unknown -handler %q", *handler)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	f, err := ferretdb.New(conf)
	if err != nil {
		return err
	}

	logger.Info("agora-ferretdb: listening",
		slog.String("addr", *listenAddr), slog.String("handler", *handler),
		slog.String("backend_url", backendURL), slog.Int("pid", os.Getpid()))

	if err = f.Run(ctx); err != nil {
		return err
	}

	logger.Info("agora-ferretdb: stopped")

	return nil
}

func ping(args []string) error {
	fs := flag.NewFlagSet("ping", flag.ExitOnError)
	uri := fs.String("uri", "mongodb://127.0.0.1:27017/", "MongoDB URI")
	timeout := fs.Duration("timeout", 2*time.Second, "overall timeout")
	_ = fs.Parse(args)

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	opts := options.Client().ApplyURI(*uri).
		SetDirect(true).
		SetServerSelectionTimeout(*timeout).
		SetConnectTimeout(*timeout)

	client, err := mongo.Connect(ctx, opts)
	if err != nil {
		return err
	}

	// No Disconnect: it would send endSessions, which FerretDB v1 does not implement (and logs
	// as a warning on every ping); the process exits right after, closing the socket.

	var res bson.M
	if err = client.Database("admin").RunCommand(ctx, bson.D{{Key: "ping", Value: 1}}).Decode(&res); err != nil {
		return err
	}

	if ok, _ := res["ok"].(float64); ok != 1 {
		return fmt.Errorf("unexpected ping reply: %v", res)
	}

	return nil
}
