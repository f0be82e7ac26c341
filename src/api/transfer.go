package api

import (
	"context"

	"reagent/src/errdefs"
	"reagent/src/transfer"
	"reagent/src/wamp"
)

// Chunk markers of write_data (platform.md §8).
const (
	chunkBegin = "BEGIN"
	chunkEnd   = "END"
)

// Transfers is what write_data needs from the upload owner
// (*transfer.Manager).
type Transfers interface {
	Begin(ctx context.Context, containerName, fileName, id string, total uint64) error
	Chunk(ctx context.Context, containerName, id, hexData string) error
	End(ctx context.Context, containerName, id string) (string, error)
}

var _ Transfers = (*transfer.Manager)(nil)

// WriteDataArgs are write_data's five positional args, in the reference's
// order ("Matches file_transfer.ts payload"):
//
//	["BEGIN" | "END" | "<hex bytes>", "myapp.tgz", "dev_42_myapp", 1048576, "1700000000000"]
type WriteDataArgs struct {
	Chunk         string
	FileName      string
	ContainerName string
	Total         uint64 // decoded bytes of the whole upload
	ID            string
}

// DecodeWriteData decodes and validates write_data's arguments. Type
// errors carry the reference's texts; a file name that is not a plain
// name ("../x", "/etc/x", "a/b"), a malformed container name or id are
// invalid arguments too, whatever the chunk.
func DecodeWriteData(c *wamp.Call) (WriteDataArgs, error) {
	if len(c.Args) < 5 {
		return WriteDataArgs{}, errdefs.InvalidArgument("write_data takes 5 arguments [chunk, fileName, containerName, total, id], got %d", len(c.Args))
	}
	var a WriteDataArgs
	var err error
	if a.Chunk, err = c.StringArg(0, "chunk"); err != nil {
		return WriteDataArgs{}, err
	}
	if a.FileName, err = c.StringArg(1, "name"); err != nil {
		return WriteDataArgs{}, err
	}
	if a.ContainerName, err = c.StringArg(2, "containerName"); err != nil {
		return WriteDataArgs{}, err
	}
	if a.Total, err = c.Uint64Arg(3, "total", false); err != nil {
		return WriteDataArgs{}, err
	}
	if a.ID, err = c.StringArg(4, "id"); err != nil {
		return WriteDataArgs{}, err
	}
	if err := transfer.ValidateFileName(a.FileName); err != nil {
		return WriteDataArgs{}, err
	}
	if err := transfer.ValidateContainerName(a.ContainerName); err != nil {
		return WriteDataArgs{}, err
	}
	if err := transfer.ValidateID(a.ID); err != nil {
		return WriteDataArgs{}, err
	}
	return a, nil
}

// registerTransfer adds write_data when there is a transfer owner.
func (h *handlers) registerTransfer(r Registrar) {
	if h.d.Transfers != nil {
		h.add(r, ProcWriteData, h.writeData)
	}
}

// write_data: BEGIN starts (or restarts) the upload of fileName for
// containerName, hex chunks append to it, END stores it in the build dir.
// The answer is always empty; progress goes to the app's log topic.
func (h *handlers) writeData(ctx context.Context, c *wamp.Call) (wamp.Result, error) {
	a, err := DecodeWriteData(c)
	if err != nil {
		return wamp.Result{}, err
	}
	switch a.Chunk {
	case chunkBegin:
		err = h.d.Transfers.Begin(ctx, a.ContainerName, a.FileName, a.ID, a.Total)
	case chunkEnd:
		_, err = h.d.Transfers.End(ctx, a.ContainerName, a.ID)
	default:
		err = h.d.Transfers.Chunk(ctx, a.ContainerName, a.ID, a.Chunk)
	}
	return wamp.Result{}, err
}
