package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/sluicehq/sluice/processor"
	"github.com/sluicehq/sluice/stream"
)

// Demo is the processor an embedded demo runs in the background.
type Demo struct {
	*processor.Processor
	stop    context.CancelFunc
	done    chan struct{}
	err     error
	tempDir string
}

// StartDemo builds the processor of topo on brokers and runs it in the
// background until Stop. Without a state directory in the flags it uses a
// temporary one (named after the demo), which Stop removes.
func (c *Common) StartDemo(ctx context.Context, name string, topo *stream.Topology, brokers []string, logger *slog.Logger) (*Demo, error) {
	d := &Demo{done: make(chan struct{})}
	if c.StateDir == "" {
		dir, err := os.MkdirTemp("", "sluice-"+name+"-")
		if err != nil {
			return nil, err
		}
		d.tempDir, c.StateDir = dir, dir
	}
	p, err := c.NewProcessor(topo, brokers, logger)
	if err != nil {
		d.removeTempDir()
		return nil, err
	}
	d.Processor = p
	pctx, stop := context.WithCancel(ctx)
	d.stop = stop
	go func() {
		defer close(d.done)
		d.err = p.Run(pctx)
	}()
	return d, nil
}

// Stopped is closed once the processor's Run has returned (see WaitFor).
func (d *Demo) Stopped() <-chan struct{} { return d.done }

// Stop stops the processor, waits until its Run returns, removes the
// temporary state directory and returns Run's error. Calling it again
// returns the same error.
func (d *Demo) Stop() error {
	d.stop()
	<-d.done
	d.removeTempDir()
	return d.err
}

func (d *Demo) removeTempDir() {
	if d.tempDir != "" {
		os.RemoveAll(d.tempDir)
		d.tempDir = ""
	}
}
