package state

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Opt configures [Open]. Options are values named after the setting they
// set, as in package processor.
type Opt interface {
	apply(*cfg)
}

type cfg struct {
	fs        vfs.FS
	cacheSize int64
	logger    pebble.Logger
}

func defaultCfg() cfg {
	return cfg{
		fs:        vfs.Default,
		cacheSize: defaultCacheSize,
		logger:    quietLogger{},
	}
}

// validate holds every check across options.
func (c *cfg) validate() error {
	if c.fs == nil {
		return errors.New("state: FS(nil): pass a filesystem, e.g. vfs.NewMem()")
	}
	if c.logger == nil {
		return errors.New("state: Logger(nil): pass a logger, e.g. pebble.DefaultLogger")
	}
	if c.cacheSize < 0 {
		return fmt.Errorf("state: CacheSize(%d): the cache size must not be negative", c.cacheSize)
	}
	return nil
}

// defaultCacheSize is the block cache's default size, Pebble's own.
const defaultCacheSize = 8 << 20

type optFunc func(*cfg)

func (f optFunc) apply(c *cfg) { f(c) }

// FS sets the filesystem Pebble stores its files in. The default is the
// operating system's (vfs.Default). Tests use vfs.NewMem, or
// vfs.NewCrashableMem to simulate crashes.
//
// With any filesystem other than vfs.Default, Open relies on Pebble's own
// LOCK file alone to keep two DBs off one directory (see [ErrLocked]).
func FS(fs vfs.FS) Opt {
	return optFunc(func(c *cfg) { c.fs = fs })
}

// CacheSize sets the size in bytes of Pebble's block cache, shared by all
// stores of the DB (Pebble's Options.CacheSize). The default is 8 MiB;
// 0 means Pebble's default, which is also 8 MiB. The runtime sets it from
// processor.StateCacheSize.
func CacheSize(bytes int64) Opt {
	return optFunc(func(c *cfg) { c.cacheSize = bytes })
}

// Logger sets the logger Pebble writes to (Pebble's Options.Logger). The
// default drops Pebble's informational messages (one per Open, WAL replay
// details) and writes its errors to the standard library's log package; pass
// pebble.DefaultLogger to see everything.
func Logger(l pebble.Logger) Opt {
	return optFunc(func(c *cfg) { c.logger = l })
}

// quietLogger is the default logger: Pebble's errors only.
type quietLogger struct{}

func (quietLogger) Infof(format string, args ...any) {}

func (quietLogger) Errorf(format string, args ...any) {
	pebble.DefaultLogger.Errorf(format, args...)
}

func (quietLogger) Fatalf(format string, args ...any) {
	pebble.DefaultLogger.Fatalf(format, args...)
}
