package main

// The image service. Images mean nothing here (containers run from the node's filesystem), so
// every pull succeeds at once. The fake image service stores a pulled image with the name as
// id and size 0, which kubelet refuses ("Id or size of image is not set") the second time it
// meets the image; here an image gets a content-like id (sha256 of its name) and a size, and is
// found by name, id or tag.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1alpha2"
)

const fakeImageSize = 4 << 20 // what every image "weighs", for kubelet's image accounting

func imageID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func (r *runtime) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	name := req.GetImage().GetImage()
	if _, err := r.RemoteRuntime.PullImage(ctx, req); err != nil {
		return nil, err
	}
	r.ImageService.Lock()
	if image, ok := r.ImageService.Images[name]; ok {
		image.Id = imageID(name)
		image.Size_ = fakeImageSize
		image.RepoTags = []string{name}
	}
	r.ImageService.Unlock()
	r.persist()
	return &runtimeapi.PullImageResponse{ImageRef: imageID(name)}, nil
}

// findImage: REQUIRES r.ImageService locked.
func (r *runtime) findImage(ref string) (string, *runtimeapi.Image) {
	if image, ok := r.ImageService.Images[ref]; ok {
		return ref, image
	}
	for key, image := range r.ImageService.Images {
		if image.Id == ref {
			return key, image
		}
		for _, tag := range image.RepoTags {
			if tag == ref {
				return key, image
			}
		}
	}
	return "", nil
}

// imageName is the name an image id or name was pulled as (pod status shows names).
func (r *runtime) imageName(ref string) string {
	r.ImageService.Lock()
	defer r.ImageService.Unlock()
	if key, image := r.findImage(ref); image != nil {
		return key
	}
	return ref
}

func (r *runtime) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	r.ImageService.Lock()
	defer r.ImageService.Unlock()
	_, image := r.findImage(req.GetImage().GetImage())
	return &runtimeapi.ImageStatusResponse{Image: image}, nil
}

func (r *runtime) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	r.ImageService.Lock()
	if key, image := r.findImage(req.GetImage().GetImage()); image != nil {
		delete(r.ImageService.Images, key)
	}
	r.ImageService.Unlock()
	r.persist()
	return &runtimeapi.RemoveImageResponse{}, nil
}

func (r *runtime) ImageFsInfo(ctx context.Context, req *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	r.ImageService.Lock()
	count := uint64(len(r.ImageService.Images))
	r.ImageService.Unlock()
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  time.Now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: r.opts.stateDir},
		UsedBytes:  &runtimeapi.UInt64Value{Value: count * fakeImageSize},
		InodesUsed: &runtimeapi.UInt64Value{Value: count},
	}}}, nil
}
